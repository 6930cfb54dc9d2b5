"""The processor API and the worker engine that runs it.

`base` (what a processor is and sees: `BaseProcessor`, `JobContext`, `JobView`) and
`registry` (which processor runs which job type) are what a team's processors module
imports, through the public names of `jobtrail`. `samples` simulates the product's
generation jobs for the demo and the tests. `engine/` claims, runs, heartbeats and reaps;
processors never import it.
"""
