-- The schema of a rankact store at schema version 3 (end-user feedback; before hashed question index, lease caps and per-app vote ids), as rankact made it.
CREATE TABLE meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE questions (
	id VARCHAR(128) NOT NULL, 
	text TEXT NOT NULL, 
	gold JSON NOT NULL, 
	metadata JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE annotators (
	name VARCHAR(128) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	revoked_at DATETIME, 
	PRIMARY KEY (name), 
	UNIQUE (token_hash)
);
CREATE TABLE trajectories (
	id VARCHAR(128) NOT NULL, 
	question_id VARCHAR(128) NOT NULL, 
	question TEXT NOT NULL, 
	model VARCHAR(512) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	created_at DATETIME NOT NULL, 
	data TEXT NOT NULL, 
	damaged BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(question_id) REFERENCES questions (id)
);
CREATE INDEX ix_trajectories_model ON trajectories (model);
CREATE INDEX ix_trajectories_status ON trajectories (status);
CREATE INDEX ix_trajectories_damaged ON trajectories (damaged);
CREATE INDEX ix_trajectories_question ON trajectories (question);
CREATE INDEX ix_trajectories_created_at ON trajectories (created_at);
CREATE INDEX ix_trajectories_question_id ON trajectories (question_id);
CREATE TABLE rankings (
	id VARCHAR(128) NOT NULL, 
	question_id VARCHAR(128) NOT NULL, 
	annotator VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	order_json JSON NOT NULL, 
	flags JSON NOT NULL, 
	comment TEXT NOT NULL, 
	source VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_ranking_question_annotator UNIQUE (question_id, annotator), 
	FOREIGN KEY(question_id) REFERENCES questions (id)
);
CREATE INDEX ix_rankings_source ON rankings (source);
CREATE INDEX ix_rankings_annotator ON rankings (annotator);
CREATE INDEX ix_rankings_question_id ON rankings (question_id);
CREATE TABLE leases (
	question_id VARCHAR(128) NOT NULL, 
	annotator VARCHAR(128) NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (question_id), 
	FOREIGN KEY(question_id) REFERENCES questions (id)
);
CREATE TABLE end_user_feedback (
	id VARCHAR(128) NOT NULL, 
	slot VARCHAR(64) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	question_id VARCHAR(128) NOT NULL, 
	trajectory_id VARCHAR(128) NOT NULL, 
	rejected_id VARCHAR(128), 
	score FLOAT, 
	app VARCHAR(128) NOT NULL, 
	end_user VARCHAR(128) NOT NULL, 
	comment TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	received_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (slot), 
	FOREIGN KEY(question_id) REFERENCES questions (id)
);
CREATE INDEX ix_end_user_feedback_trajectory_id ON end_user_feedback (trajectory_id);
CREATE INDEX ix_end_user_feedback_question_id ON end_user_feedback (question_id);
CREATE INDEX ix_end_user_feedback_end_user ON end_user_feedback (end_user);
CREATE INDEX ix_end_user_feedback_kind ON end_user_feedback (kind);
