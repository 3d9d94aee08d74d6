-- The book's 3-layer network in SQL: output scores for one MNIST image.
--
-- Run from a folder holding weights.csv (weights saved by weightstore as CSV) and
-- image.csv (one test image, rows "index,pixel", as weightstore.lab.interop.mnist.write_image_csv
-- writes it); see README.md beside this file:
--
--     sqlite3 :memory: < scores.sql
--
-- Prints one row per class, "class,score", score = softmax output y. Needs sqlite3 3.35+
-- built with math functions (exp); check with: sqlite3 :memory: "select exp(1)".
--
--   a1 = x W1 + b1, z1 = sigmoid(a1), a2 = z1 W2 + b2, z2 = sigmoid(a2),
--   a3 = z2 W3 + b3, y = softmax(a3)            x = pixel / 255

.bail on
.import --csv weights.csv weights_csv
.import --csv image.csv image_csv

-- weights.csv has one row per value: tensor,dtype,shape,index,value, where index is the
-- row-major position; for a matrix of shape RxC ("784x50") that is r*C + c. Metadata rows
-- (dtype "metadata") carry no value.
CREATE TABLE param AS
SELECT tensor,
       CASE WHEN instr(shape, 'x') > 0
            THEN CAST("index" AS INTEGER) / CAST(substr(shape, instr(shape, 'x') + 1) AS INTEGER)
            ELSE 0 END AS r,
       CASE WHEN instr(shape, 'x') > 0
            THEN CAST("index" AS INTEGER) % CAST(substr(shape, instr(shape, 'x') + 1) AS INTEGER)
            ELSE CAST("index" AS INTEGER) END AS c,
       CAST(value AS REAL) AS v
FROM weights_csv
WHERE dtype <> 'metadata' AND tensor IN ('W1', 'b1', 'W2', 'b2', 'W3', 'b3');
CREATE INDEX param_tensor_r ON param (tensor, r);

CREATE TABLE x AS
SELECT CAST("index" AS INTEGER) AS i, CAST(pixel AS REAL) / 255.0 AS v FROM image_csv;

-- One dense layer: a[c] = sum_r in[r] * W[r, c] + b[c].
CREATE TABLE a1 AS
SELECT w.c AS i, SUM(x.v * w.v) + (SELECT v FROM param WHERE tensor = 'b1' AND c = w.c) AS v
FROM x JOIN param AS w ON w.tensor = 'W1' AND w.r = x.i GROUP BY w.c;
CREATE TABLE z1 AS SELECT i, 1.0 / (1.0 + exp(-v)) AS v FROM a1;

CREATE TABLE a2 AS
SELECT w.c AS i, SUM(z1.v * w.v) + (SELECT v FROM param WHERE tensor = 'b2' AND c = w.c) AS v
FROM z1 JOIN param AS w ON w.tensor = 'W2' AND w.r = z1.i GROUP BY w.c;
CREATE TABLE z2 AS SELECT i, 1.0 / (1.0 + exp(-v)) AS v FROM a2;

CREATE TABLE a3 AS
SELECT w.c AS i, SUM(z2.v * w.v) + (SELECT v FROM param WHERE tensor = 'b3' AND c = w.c) AS v
FROM z2 JOIN param AS w ON w.tensor = 'W3' AND w.r = z2.i GROUP BY w.c;

-- Softmax, shifted by the largest score so that exp cannot overflow.
CREATE TABLE y AS
WITH m AS (SELECT max(v) AS top FROM a3),
     e AS (SELECT a3.i, exp(a3.v - m.top) AS v FROM a3, m)
SELECT i, v / (SELECT sum(v) FROM e) AS v FROM e;

.headers on
.mode csv
SELECT i AS class, printf('%.9e', v) AS score FROM y ORDER BY i;
