"""The shared core of both processes: ids, wire types, policy, config, audit, logs,
metrics. It imports neither docker nor any chat library (make lint checks it).
"""
