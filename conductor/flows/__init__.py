"""Multi-service flows run by the conductor, one module per flow.

Each flow is an ordered list of :class:`conductor.flows.runner.Step` s run by
:func:`conductor.flows.runner.run_flow`.
"""
