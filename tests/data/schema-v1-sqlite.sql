-- SLM schema version 1 for SQLite, as slm_api.py 0.1.0 made it (for the upgrade test)
CREATE TABLE IF NOT EXISTS slm_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS slurm_jobs (
  job_id TEXT PRIMARY KEY,
  status TEXT, status_time TEXT, status_seq INTEGER, status_event TEXT,
  first_seen TEXT, submitted_at TEXT, started_at TEXT, ended_at TEXT,
  last_event_time TEXT, last_seq INTEGER, event_count INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER, signal TEXT, reason TEXT, message TEXT, elapsed REAL,
  job_name TEXT, user TEXT, partition TEXT, nodelist TEXT, host TEXT, cluster TEXT,
  slurm_job_id TEXT, array_job_id TEXT, array_task_id TEXT, meta TEXT
);
CREATE INDEX IF NOT EXISTS slurm_jobs_last ON slurm_jobs (last_event_time, job_id);
CREATE INDEX IF NOT EXISTS slurm_jobs_status ON slurm_jobs (status);
CREATE INDEX IF NOT EXISTS slurm_jobs_user ON slurm_jobs (user);
CREATE INDEX IF NOT EXISTS slurm_jobs_name ON slurm_jobs (job_name);
CREATE INDEX IF NOT EXISTS slurm_jobs_array ON slurm_jobs (array_job_id);
CREATE TABLE IF NOT EXISTS slurm_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  status TEXT NOT NULL,
  time TEXT NOT NULL,
  seq INTEGER,
  received_at TEXT NOT NULL,
  raw TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS slurm_events_job ON slurm_events (job_id, time, seq);
CREATE TABLE IF NOT EXISTS slm_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dedup_key TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL,
  destination TEXT NOT NULL, format TEXT NOT NULL, secret TEXT, dashboard_url TEXT,
  payload TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL,
  lease_owner TEXT, lease_until TEXT, last_error TEXT,
  created_at TEXT NOT NULL, sent_at TEXT
);
CREATE INDEX IF NOT EXISTS slm_outbox_due ON slm_outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS slm_outbox_job ON slm_outbox (job_id);
