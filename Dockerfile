# The Producer API: gunicorn + Flask, configured only by environment variables (see README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PRODUCER_PORT=8001

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY producer_api/ producer_api/
COPY wsgi.py gunicorn.conf.py ./

RUN useradd --system --uid 10001 --no-create-home producer
USER producer

EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; port = os.environ.get('PRODUCER_PORT', '').strip() or '8001'; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=3)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
