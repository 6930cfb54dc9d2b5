# The jobtrail image: the CLI is the entrypoint, so a compose service's `command` is a
# jobtrail command line (`worker --concurrency 4`, `relay`, `db init`, `consume ...`).
#
# jobtrail is installed from its wheel, as users install it: the repository's source folders
# stay in the build stage, so nothing but the package `jobtrail` can be imported from them.
# The working directory holds the example service (examples/); the CLI puts it on sys.path,
# so `worker --app examples.media_service:registry` runs it. A team's image does the same
# with its own processors module.
FROM python:3.12-slim AS wheel

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY jobtrail ./jobtrail
COPY domain ./domain
COPY adapters ./adapters
COPY processors ./processors
COPY projections ./projections
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /app jobtrail

WORKDIR /app
COPY examples ./examples

USER jobtrail
ENTRYPOINT ["jobtrail"]
CMD ["--help"]
