"""natchat's protocol logic, without I/O: plain objects fed datagrams and ``now``.

Nothing in this package imports ``trio`` or ``socket`` or reads a clock (``tests/test_layering.py``
keeps it that way).
"""
