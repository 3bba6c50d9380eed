"""Row 3, both sides: one publisher page, served by mod_python.publisher and modpy_safe.publisher."""


def index(req):
    return "hello from a page\n"
