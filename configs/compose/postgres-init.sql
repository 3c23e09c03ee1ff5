-- Run once by the postgres image on an empty data volume
-- (/docker-entrypoint-initdb.d): a database per agent, owned by the amesh
-- user the agents connect as.
CREATE DATABASE assistant OWNER amesh;
CREATE DATABASE helper OWNER amesh;
