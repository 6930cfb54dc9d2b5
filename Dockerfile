# The jobtrail image: the CLI is the entrypoint, so a compose service's `command` is a
# jobtrail command line (`worker --concurrency 4`, `relay`, `db init`, `consume ...`).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobtrail ./jobtrail
COPY domain ./domain
COPY adapters ./adapters
COPY processors ./processors
COPY projections ./projections
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app jobtrail

USER jobtrail
ENTRYPOINT ["jobtrail"]
CMD ["--help"]
