"""Readers of every input format, behind one small interface each.

A snapshot reader takes a file and the threads it may hash with (0: one per
core) and returns ``(gfn, hash)``: the guest frame numbers it holds, in frame
order, and the xxh3-64 of each frame's 4 KiB; xpipe.readers.registry maps
each snapshot kind of the manifest to its reader.
Real captures and synthetic ones go through the same readers. Writing a
bundle is xpipe.bundle's.
"""
