#!/usr/bin/env python3
"""DuckDB over the netgpt offload logs, reading the Parquet the archiver and
`netgpt dataset build` wrote, unchanged.

  lake.py count   --lake DIR [--datasets DIR]
      rows per table (and per dataset folder), as JSON: the interoperability check.
  lake.py build   --lake DIR --sql DIR --out DIR
      the dataset build of `netgpt dataset build` (source statistics, then every
      sql/datasets/*.sql written as Parquet), run by DuckDB on the same files with
      the same SQL text; prints rows per dataset and seconds, as JSON.
  lake.py compare --left DIR --right DIR
      rows of each dataset in one build and not the other (EXCEPT ALL both ways).
  lake.py json-same  < pairs.json
      json_same of each [a, b] pair, as a JSON list (tested against netgpt's).

`json_same(a, b)` is a DataFusion function of netgpt; here it is a macro with
the same meaning for tool calls: NULL unless both are JSON; objects equal when
their key sets are equal and every member is (two levels deep: the call and its
arguments; deeper values compare as minified JSON text); numbers compare as
numbers (5 = 5.0), otherwise values compare as JSON (5 <> "5").
"""
import argparse
import glob
import json
import os
import sys
import time

import duckdb


def tables(con, lake):
    names = []
    for path in sorted(glob.glob(os.path.join(lake, "*"))):
        name = os.path.basename(path)
        if name == "datasets" or not glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True):
            continue
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}/**/*.parquet', "
            "hive_partitioning = true, hive_types = {'date': VARCHAR, 'hour': VARCHAR})"
        )
        names.append(name)
    return names


JSON_SAME = [
    """CREATE MACRO json_value_same(u, v) AS u = v OR (json_type(u) IN ('UBIGINT', 'BIGINT', 'DOUBLE')
       AND json_type(v) IN ('UBIGINT', 'BIGINT', 'DOUBLE') AND TRY_CAST(u AS DOUBLE) = TRY_CAST(v AS DOUBLE))""",
    """CREATE MACRO json_member(x, k) AS json_extract(x, '$."' || k || '"')""",
    """CREATE MACRO json_same(a, b) AS CASE
       WHEN NOT (json_valid(a) AND json_valid(b)) THEN NULL
       WHEN json_type(a) <> 'OBJECT' OR json_type(b) <> 'OBJECT' THEN json_value_same(json(a), json(b))
       WHEN list_sort(json_keys(a)) <> list_sort(json_keys(b)) THEN false
       ELSE list_bool_and(list_transform(json_keys(a), lambda k: CASE
         WHEN json_type(json_member(a, k)) = 'OBJECT' AND json_type(json_member(b, k)) = 'OBJECT'
           THEN list_sort(json_keys(json_member(a, k))) = list_sort(json_keys(json_member(b, k)))
             AND list_bool_and(list_transform(json_keys(json_member(a, k)),
                   lambda j: json_value_same(json_member(json_member(a, k), j), json_member(json_member(b, k), j))))
         ELSE json_value_same(json_member(a, k), json_member(b, k)) END))
       END""",
]


def with_json_same(con):
    for statement in JSON_SAME:
        con.execute(statement)
    return con


def count(con, relation):
    return con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]


def cmd_count(args):
    con = duckdb.connect()
    out = {"tables": {t: count(con, t) for t in tables(con, args.lake)}}
    if args.datasets:
        out["datasets"] = {}
        for d in sorted(glob.glob(os.path.join(args.datasets, "*"))):
            if os.path.isdir(d):
                out["datasets"][os.path.basename(d)] = count(con, f"read_parquet('{d}/*.parquet')")
    print(json.dumps(out))


def cmd_build(args):
    con = duckdb.connect()
    started = time.perf_counter()
    names = tables(con, args.lake)
    with_json_same(con)
    for view in sorted(glob.glob(os.path.join(args.sql, "views", "*.sql"))):
        con.execute(open(view).read())
    sources = {}
    for t in names:
        sources[t] = con.execute(f"SELECT count(*), min(_timestamp), max(_timestamp) FROM {t}").fetchone()[0]
    os.makedirs(args.out, exist_ok=True)
    datasets = {}
    for path in sorted(glob.glob(os.path.join(args.sql, "datasets", "*.sql"))):
        name = os.path.splitext(os.path.basename(path))[0]
        sql = open(path).read().strip().rstrip(";")
        target = os.path.join(args.out, name + ".parquet")
        con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet, COMPRESSION snappy)")
        datasets[name] = count(con, f"read_parquet('{target}')")
    print(json.dumps({"seconds": time.perf_counter() - started, "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
                      "sources": sources, "datasets": datasets, "duckdb": duckdb.__version__}))


def cmd_compare(args):
    con = duckdb.connect()
    out = {}
    for d in sorted(glob.glob(os.path.join(args.left, "*"))):
        if not (os.path.isdir(d) or d.endswith(".parquet")):
            continue
        name = os.path.splitext(os.path.basename(d))[0]
        left = f"read_parquet('{d}/*.parquet')" if os.path.isdir(d) else f"read_parquet('{d}')"
        r = glob.glob(os.path.join(args.right, name)) + glob.glob(os.path.join(args.right, name + ".parquet"))
        if not r:
            out[name] = None
            continue
        right = f"read_parquet('{r[0]}/*.parquet')" if os.path.isdir(r[0]) else f"read_parquet('{r[0]}')"
        only_left = count(con, f"(SELECT * FROM {left} EXCEPT ALL SELECT * FROM {right})")
        only_right = count(con, f"(SELECT * FROM {right} EXCEPT ALL SELECT * FROM {left})")
        out[name] = {"only_left": only_left, "only_right": only_right}
    print(json.dumps(out))


def cmd_json_same(_args):
    con = with_json_same(duckdb.connect())
    pairs = json.load(sys.stdin)
    print(json.dumps([con.execute("SELECT json_same(?, ?)", [a, b]).fetchone()[0] for a, b in pairs]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count")
    c.add_argument("--lake", required=True)
    c.add_argument("--datasets")
    b = sub.add_parser("build")
    b.add_argument("--lake", required=True)
    b.add_argument("--sql", required=True)
    b.add_argument("--out", required=True)
    m = sub.add_parser("compare")
    m.add_argument("--left", required=True)
    m.add_argument("--right", required=True)
    sub.add_parser("json-same")
    args = p.parse_args()
    {"count": cmd_count, "build": cmd_build, "compare": cmd_compare, "json-same": cmd_json_same}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
