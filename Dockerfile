# One image for the coordinator and the CPU agent (the command picks the role).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LATENCYLAB_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY latencylab latencylab
COPY server server
COPY agents agents
COPY converters converters
COPY db db
COPY web web
ARG EXTRAS=server,s3,agent,onnxruntime
RUN pip install ".[${EXTRAS}]"
VOLUME /data
EXPOSE 8000
CMD ["latencylab", "serve", "--host", "0.0.0.0", "--no-local-agent"]
