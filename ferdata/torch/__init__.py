"""PyTorch datasets over ferdata shards and face stores (imports torch)."""
