"""
What squeak counts about itself, for its cache manager pages and its
Prometheus metrics: the counters incremented per request
(L{squeak.stats.counters}), their sum over the worker processes
(L{squeak.stats.table}), and the pages drawn from them
(L{squeak.stats.pages}).
"""
