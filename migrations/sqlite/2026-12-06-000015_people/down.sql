DROP TABLE web_sessions;
DROP TABLE people;
DROP TABLE sign_in_attempts;
