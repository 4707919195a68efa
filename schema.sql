-- SLM (Slurm Lifecycle Monitor) schema for MySQL/MariaDB, version 4.
-- slm_api.py creates these tables itself when they are missing; this file is
-- for DBAs who prefer to create them by hand.  It is generated from COLUMNS
-- and KEYS in slm_api.py (tests/test_storage.py checks they agree).

CREATE TABLE IF NOT EXISTS `slm_meta` (
  `name` VARCHAR(64) NOT NULL,
  `value` VARCHAR(255) NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slurm_jobs` (
  `job_key` VARCHAR(192) NOT NULL,
  `job_id` VARCHAR(128) NOT NULL,
  `status` VARCHAR(16) NULL,
  `status_time` VARCHAR(32) NULL,
  `status_seq` BIGINT NULL,
  `status_event` VARCHAR(64) NULL,
  `first_seen` VARCHAR(32) NULL,
  `submitted_at` VARCHAR(32) NULL,
  `started_at` VARCHAR(32) NULL,
  `ended_at` VARCHAR(32) NULL,
  `last_event_time` VARCHAR(32) NULL,
  `last_seq` BIGINT NULL,
  `event_count` INT NOT NULL DEFAULT 0,
  `exit_code` BIGINT NULL,
  `signal` TEXT NULL,
  `reason` TEXT NULL,
  `message` TEXT NULL,
  `elapsed` DOUBLE NULL,
  `job_name` TEXT NULL,
  `user` TEXT NULL,
  `partition` TEXT NULL,
  `nodelist` TEXT NULL,
  `host` TEXT NULL,
  `cluster` TEXT NULL,
  `slurm_job_id` TEXT NULL,
  `array_job_id` TEXT NULL,
  `array_task_id` TEXT NULL,
  `meta` MEDIUMTEXT NULL,
  `restarts` INT NOT NULL DEFAULT 0,
  `heartbeat_at` VARCHAR(32) NULL,
  `heartbeat_interval` DOUBLE NULL,
  `beat` TEXT NULL,
  `checked_at` VARCHAR(32) NULL,
  `asked_at` VARCHAR(32) NULL,
  `slurm_state` VARCHAR(32) NULL,
  `slurm_reason` VARCHAR(255) NULL,
  `slurm_usage` TEXT NULL,
  `job_group` VARCHAR(128) NULL,
  `relay` MEDIUMTEXT NULL,
  PRIMARY KEY (`job_key`),
  KEY `slurm_jobs_id` (`job_id`),
  KEY `slurm_jobs_last` (`last_event_time`, `job_key`),
  KEY `slurm_jobs_status` (`status`),
  KEY `slurm_jobs_user` (`user`(191)),
  KEY `slurm_jobs_name` (`job_name`(191)),
  KEY `slurm_jobs_array` (`array_job_id`(64)),
  KEY `slurm_jobs_group` (`job_group`(64)),
  KEY `slurm_jobs_first` (`first_seen`, `job_key`),
  KEY `slurm_jobs_user_first` (`user`(64), `first_seen`, `job_key`),
  KEY `slurm_jobs_user_ended` (`user`(64), `ended_at`, `status`),
  KEY `slurm_jobs_ended` (`ended_at`, `status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slurm_events` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `event_id` VARCHAR(64) NOT NULL,
  `job_key` VARCHAR(192) NOT NULL,
  `job_id` VARCHAR(128) NOT NULL,
  `user` VARCHAR(255) NULL,
  `status` VARCHAR(16) NOT NULL,
  `time` VARCHAR(32) NOT NULL,
  `seq` BIGINT NULL,
  `received_at` VARCHAR(32) NOT NULL,
  `raw` MEDIUMTEXT NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `slurm_events_key` (`job_key`, `event_id`),
  KEY `slurm_events_job` (`job_key`, `time`, `seq`),
  KEY `slurm_events_user` (`user`, `id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slm_outbox` (
  `id` BIGINT NOT NULL AUTO_INCREMENT,
  `dedup_key` VARCHAR(64) NOT NULL,
  `job_key` VARCHAR(192) NOT NULL,
  `job_id` VARCHAR(128) NOT NULL,
  `destination` TEXT NOT NULL,
  `format` VARCHAR(16) NOT NULL,
  `secret` TEXT NULL,
  `dashboard_url` TEXT NULL,
  `payload` MEDIUMTEXT NOT NULL,
  `state` VARCHAR(16) NOT NULL,
  `attempts` INT NOT NULL DEFAULT 0,
  `next_attempt_at` VARCHAR(32) NOT NULL,
  `lease_owner` VARCHAR(64) NULL,
  `lease_until` VARCHAR(32) NULL,
  `last_error` TEXT NULL,
  `created_at` VARCHAR(32) NOT NULL,
  `sent_at` VARCHAR(32) NULL,
  `event_id` VARCHAR(64) NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `slm_outbox_dedup` (`dedup_key`),
  KEY `slm_outbox_due` (`state`, `next_attempt_at`),
  KEY `slm_outbox_job` (`job_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slm_leases` (
  `name` VARCHAR(64) NOT NULL,
  `owner` VARCHAR(64) NOT NULL,
  `until` VARCHAR(32) NOT NULL,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS `slm_sessions` (
  `session` VARCHAR(64) NOT NULL,
  `token` VARCHAR(64) NOT NULL,
  `created_at` VARCHAR(32) NOT NULL,
  `expires_at` VARCHAR(32) NOT NULL,
  PRIMARY KEY (`session`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
