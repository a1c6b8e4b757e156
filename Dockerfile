# RankLoop's image: web, migrations and workers (docker-compose.yml builds it once).
#
# torch comes from TORCH_INDEX_URL, pinned by TORCH_SPEC:
#   default           PyTorch's CPU-only wheels: the image for web and CPU workers, without the
#                     several GB of CUDA libraries (docker-compose.yml, rankloop:cpu)
#   empty             pip's default index, whose Linux torch is a CUDA build (GPU workers:
#                     docker-compose.gpu.yml, rankloop:cuda)
#   PyTorch's index for one CUDA version (.../whl/cu118 and the like), with a TORCH_SPEC it
#                     has: a GPU image for an older driver
# EXTRAS: optional extras, e.g. EXTRAS=s3 for an s3:// artifact store.
# Every other dependency is pinned by requirements.lock (.ci/lock.py writes it from the tested
# environment) and installed before the code is copied: a code change rebuilds only the last
# layers.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
ARG EXTRAS=""
# A fixed UID and GID: files in the named volumes keep an owner this image knows across
# rebuilds (1000, what earlier images gave the rankloop user).
ARG RANKLOOP_UID=1000
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 RANKLOOP_DATA_DIR=/data
WORKDIR /app

# Every path compose mounts a named volume on exists here, owned by rankloop: a fresh volume
# takes its owner from the image's directory (root's when the directory is missing).
RUN groupadd --gid "$RANKLOOP_UID" rankloop \
    && useradd --uid "$RANKLOOP_UID" --gid "$RANKLOOP_UID" --create-home rankloop \
    && mkdir -p /data /artifacts /home/rankloop/.cache/huggingface \
    && chown -R rankloop:rankloop /data /artifacts /home/rankloop/.cache

RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY rankloop ./rankloop
COPY migrations ./migrations
COPY templates ./templates
# Only RankLoop itself (and the packages EXTRAS asks for) is left to install; `pip check`
# fails the build if TORCH_SPEC and the locked packages disagree.
RUN pip install -c requirements.lock -e ".${EXTRAS:+[$EXTRAS]}" && pip check
USER rankloop
EXPOSE 8000
CMD ["rankloop", "serve", "--host", "0.0.0.0", "--port", "8000"]
