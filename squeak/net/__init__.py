"""
Twisted I/O: the client channel, origin connections and their pool (with
upgrades), tunnels, interception, the write batcher, deadlines, the event
loop and the allocator tuning.

These modules move bytes and call the pure decisions in L{squeak.http},
L{squeak.cache} and L{squeak.access}; they decide nothing themselves.
"""
