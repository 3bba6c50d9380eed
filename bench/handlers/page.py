"""Row 3, both sides: one page, served by mod_python.publisher and by modpy_safe.publisher."""


def index(req):
    return "hello from a page\n"
