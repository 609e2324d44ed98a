# One Dockerfile for every LatencyLab image; the EXTRAS build arg (extras of pyproject.toml)
# picks what an image runs:
#   coordinator + converter worker (the default): docker build -t latencylab .
#     server, s3, the converter toolchain (convert) and executorch (.pte uploads are read and
#     .pt2/ONNX converted to .pte with it); agent: `latencylab converter` runs from it too
#   CPU agent with the runtimes this Linux image can run:
#     docker build --build-arg EXTRAS=agent,onnxruntime,tflite,openvino,torch,executorch \
#       -t latencylab-agent .
#   GPU agent (NVIDIA host): --build-arg EXTRAS=agent,onnxruntime,gpu
# deploy/install.sh runs the pip steps of `make setup` for those extras: torch 2.13.0 first
# (the CPU build, TORCH_INDEX_URL), the extras under constraints.txt, the --no-deps group.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 LATENCYLAB_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY deploy/install.sh deploy/install.sh
COPY latencylab latencylab
COPY server server
COPY agents agents
COPY converters converters
COPY predictor predictor
COPY db db
COPY web web
ARG EXTRAS=server,s3,agent,convert,executorch,predict
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
LABEL org.opencontainers.image.title="LatencyLab" latencylab.extras="${EXTRAS}"
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" bash deploy/install.sh "${EXTRAS}"
VOLUME /data
EXPOSE 8000
CMD ["latencylab", "serve", "--host", "0.0.0.0", "--no-local-agent"]
