"""Row 2, A: the same answer as ``fn.py`` from a ``modpy_safe.Handler`` subclass."""
import modpy_safe


class Hello(modpy_safe.Handler):
    def get(self):
        return "hello from a handler\n"
