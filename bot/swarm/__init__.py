"""The swarm side: the worker, engine and CLI wrappers, convergence, pre-flight, diff,
ordering, notices. The only code that imports docker; it never imports a chat library.
"""
