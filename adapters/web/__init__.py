"""The web dashboard (`jobtrail web`): jobs, each job's timeline and chain, charts.

`app.create_app` builds the Starlette app; `queries` holds all its SQL, `charts` draws the
SVG, `params` checks what a request asks for. See docs/dashboard.md.
"""
