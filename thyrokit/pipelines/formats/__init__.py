"""The release's formats, one module per consumer: each renders the native release into its layout.

``manifest`` is the native release itself (tables and pixel shards); every other
format reads only from it, so they all agree on which images and labels a split holds.
"""
