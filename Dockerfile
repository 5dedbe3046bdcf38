# The Wasla engine image: one image, every role (`wasla run --role …`).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY channels ./channels
RUN pip install --no-cache-dir .
COPY config ./config
COPY mappings ./mappings
COPY nomenclatures ./nomenclatures
RUN useradd --system --uid 10001 wasla && mkdir -p /app/var && chown wasla /app/var
USER wasla
EXPOSE 2575
CMD ["wasla", "run"]
