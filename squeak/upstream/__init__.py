"""
Groups of upstream servers: parent peers and accelerator origin pools.

Which member to try, in what order (selection, CARP), and whether each is
up (health): the decisions both kinds of group share, kept pure so the
Twisted code that connects and probes only carries them out.
"""
