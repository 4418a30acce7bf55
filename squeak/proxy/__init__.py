"""
The proxy: one exchange per request, and one handler per kind of answer
(hit, miss and validation, relay, local).
"""
