"""The pre-label model: a small U-Net with a segmentation and a pathology head.

``config`` holds its settings, ``unet`` the network, ``augment`` the weak and strong
augmentations, ``dataset`` turns tables and shards into tensors, ``train`` and
``semi_supervised`` fit it, ``predict`` runs it with an uncertainty score, and
``metrics`` measures it.
"""
