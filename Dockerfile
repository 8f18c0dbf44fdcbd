FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    STATIC_ROOT=/app/staticfiles LOYALTYSMS_DATA_DIR=/app/.data
WORKDIR /app

COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY . .
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /app/.data /app/staticfiles \
    && SECRET_KEY=build FIELD_ENCRYPTION_KEY=build DATABASE_URL=postgres://build@localhost/build \
       REDIS_URL=redis://localhost:6379/0 python manage.py collectstatic --noinput \
    && chown -R app:app /app/.data
USER app
EXPOSE 8000
CMD ["gunicorn", "loyaltysms.wsgi", "-c", "python:loyaltysms.gunicorn_conf"]
