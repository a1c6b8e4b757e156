# RankLoop image for web and workers. GPU workers: the default torch wheel from PyPI is a CUDA
# build on Linux; pass --build-arg TORCH_SPEC=... to pin another build.
FROM python:3.11-slim

ARG TORCH_SPEC="torch>=2.2,<3"
# Optional extras, e.g. EXTRAS=s3 for an s3:// artifact store.
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 RANKLOOP_DATA_DIR=/data
WORKDIR /app

RUN pip install --no-cache-dir "$TORCH_SPEC"
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY templates ./templates
# Every path compose mounts a named volume on exists here, owned by rankloop: a fresh volume
# takes its owner from the image's directory (root's when the directory is missing).
RUN pip install --no-cache-dir -e ".${EXTRAS:+[$EXTRAS]}" && useradd --create-home rankloop \
    && mkdir -p /data /artifacts /home/rankloop/.cache/huggingface \
    && chown -R rankloop /data /artifacts /home/rankloop/.cache
USER rankloop
EXPOSE 8000
CMD ["rankloop", "serve", "--host", "0.0.0.0", "--port", "8000"]
