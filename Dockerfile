# syntax=docker/dockerfile:1
# One file, two images:
#   docker build --target function .   the Lambda function (FastAPI behind Mangum); `sam build` does this
#   docker build --target ingestor .   the gRPC ingestor, for ECS on Fargate or `docker compose up ingestor`
# Dependencies come only from the hash-pinned locks in requirements/ (`make locks` regenerates them
# from pyproject.toml), and each dependency layer comes before the source it serves, so a code
# change rebuilds only the last layers.

ARG PYTHON_IMAGE=python:3.12.12-slim-trixie
# The same Python with a C compiler, for the ingestor's one compiled module.
ARG PYTHON_BUILD_IMAGE=python:3.12.12-trixie
ARG LAMBDA_IMAGE=public.ecr.aws/lambda/python:3.12.2026.10.03.13

# Shared build stage: lays out the code each image runs and compiles it to bytecode once.
# The function gets functions/ and the generated contract (ingestor/__init__.py imports nothing,
# ingestor/v1/ is generated code), never the ingestor's own modules.
FROM ${PYTHON_IMAGE} AS source
WORKDIR /out
COPY ingestor/__init__.py function/ingestor/__init__.py
COPY ingestor/v1/ function/ingestor/v1/
COPY functions/ function/functions/
COPY ingestor/ ingestor/ingestor/
RUN python -m compileall -q --invalidation-mode unchecked-hash function ingestor

# The function: AWS Lambda's Python base image, the function's runtime dependencies only.
FROM ${LAMBDA_IMAGE} AS function
COPY requirements/function.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: \
        --target "${LAMBDA_TASK_ROOT}" -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY --from=source /out/function/ ${LAMBDA_TASK_ROOT}/
CMD ["functions.app.handler"]

# The ingestor's dependencies, in a virtual environment copied whole into the final image.
FROM ${PYTHON_IMAGE} AS ingestor-dependencies
COPY requirements/ingestor.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
        --only-binary=:all: -r /tmp/requirements.txt

# The ingestor's kernels (ingestor/*.pyx), compiled by the Cython the build lock pins.
FROM ${PYTHON_BUILD_IMAGE} AS kernels
WORKDIR /build
COPY requirements/build.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --only-binary=:all: \
        -r /tmp/requirements.txt
COPY ingestor/*.pyx ingestor/
RUN cythonize --inplace -3 ingestor/*.pyx

# The ingestor: slim Python, a numeric non-root user, listening on every address of the container
# only (the code's own default stays loopback).
FROM ${PYTHON_IMAGE} AS ingestor
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INGESTOR_HOST=0.0.0.0 \
    INGESTOR_PORT=50051
COPY --from=ingestor-dependencies /opt/venv /opt/venv
WORKDIR /app
COPY --from=source /out/ingestor/ /app/
COPY --from=kernels /build/ingestor/*.so /app/ingestor/
# Durable mode's directory (INGESTOR_DATA_DIR=/var/lib/ingestor), owned by the user the ingestor
# runs as: mount a volume here to keep the log across containers (memory only when unset).
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/ingestor
VOLUME ["/var/lib/ingestor"]
USER 10001:10001
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "ingestor.healthcheck", "--timeout", "3"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "ingestor"]
