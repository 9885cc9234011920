"""The original DRYTorch's helpers, at its paths.

* ``apply_ops``: apply a function to every tensor inside nested containers;
* ``averages``: filter functions (values to one value) for hooks;
* ``local_ops``: delete, rename or copy an experiment's output folders;
* ``repr_utils``: the nested, size-limited description used for metadata.

Each submodule is imported on its own; this package imports none of them.
"""
