"""The order of the example gallery: the quickstart, the d2l chapter, the rest."""


class GalleryOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``.

    ``quickstart.py`` first, then the ``plot_d2l_NN_*`` examples in the order
    of their numbers (the chapter's order), then the other examples by name.
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename == "quickstart.py":
            return (0, filename)
        if filename.startswith("plot_d2l_"):
            return (1, filename)
        return (2, filename)
