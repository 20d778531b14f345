# The coinflow image: one image for every Python service of docker-compose.yaml
# (Airflow 3 components, the MLflow tracking server, the model API and the Gradio UI).
FROM python:3.11-slim

ARG COINFLOW_UID=1000
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    COINFLOW_WORKDIR=/opt/coinflow \
    DVC_NO_ANALYTICS=1 \
    GIT_PYTHON_REFRESH=quiet

# curl for the healthchecks; nothing else from apt.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*

# CPU torch first, from PyTorch's CPU index: the project's torch range then keeps it instead
# of pulling the multi-GB CUDA build from PyPI.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /opt/coinflow
COPY pyproject.toml README.md ./
COPY forecasting/ forecasting/
COPY core/ core/
COPY pipelines/ pipelines/
COPY registry/ registry/
COPY serving/ serving/
COPY simulation/ simulation/
COPY cli/ cli/
COPY ui/ ui/
# pyproject.toml pins the Celery provider (CeleryExecutor, `airflow celery worker`) and
# celery<5.7 (5.7 dropped celery.backends.database.retry, which the provider imports).
RUN pip install .

COPY params.yaml ./
COPY dags/ dags/
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/coinflow-entrypoint

# Non-root; the directories named volumes mount on are created here so that a fresh volume
# starts out owned by this user.
RUN useradd --uid "${COINFLOW_UID}" --create-home --shell /usr/sbin/nologin coinflow \
 && mkdir -p "${AIRFLOW_HOME}/logs" /mlflow/artifacts /opt/coinflow/data /opt/coinflow/reports \
 && chown -R coinflow "${AIRFLOW_HOME}" /mlflow /opt/coinflow
USER coinflow

ENTRYPOINT ["/usr/local/bin/coinflow-entrypoint"]
CMD ["coinflow", "--help"]
