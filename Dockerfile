FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY matchers matchers
COPY marketplace marketplace
COPY notifiers notifiers
COPY workers workers
COPY demo_regions demo_regions
RUN pip install --no-cache-dir .
ENV NVF_STATE_DIR=/var/lib/nvf
CMD ["nvf", "run"]
