"""Built-in tracker plugins.

Each tracker lives in its own module and is imported only when used;
``drytorch.trackers.defaults`` is the plugin that offers them.
"""
