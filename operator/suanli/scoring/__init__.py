"""The pure scoring core: hard filters, factor scores, ranking, estimates and explanations.

Pure data and computation: no I/O, no clock reads, no environment, no kopf or kubernetes.
Time is an input. The whole interface is `scoring.engine.evaluate(request) -> reply`.
"""
