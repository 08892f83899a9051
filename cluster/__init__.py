"""cluster: how the apps reach compute, below them and beside `registry`.

`cluster.ray` joins a Ray cluster or starts a local one, for `flows` (the tuning pool and the
searches) and `serving` (Ray Serve, batch prediction over Ray Data). It imports nothing of the
platform, and Ray only inside its functions.
"""
