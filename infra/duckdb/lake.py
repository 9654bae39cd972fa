#!/usr/bin/env python3
"""DuckDB over the netgpt offload logs, reading the Parquet the archiver and
`netgpt dataset build` wrote, unchanged.

  lake.py count   --lake DIR [--datasets DIR]
      rows per table (and per dataset folder), as JSON: the interoperability check.
  lake.py build   --lake DIR --sql DIR --out DIR --json-call-type TYPE
      the dataset build of `netgpt dataset build` (source statistics, then every
      sql/datasets/*.sql written as Parquet), run by DuckDB on the same files with
      the same SQL text; prints rows per dataset and seconds, as JSON.

`json_same(a, b)` is a DataFusion function of netgpt; here it is a macro that
compares both calls after `json_transform` to one STRUCT type covering every
tool's arguments (TYPE, made from the tool catalog by `netgpt bench datasets`):
key order and 5 vs 5.0 do not matter, as in netgpt's version.
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
    con.execute(f"CREATE MACRO json_same(a, b) AS CASE WHEN json_valid(a) AND json_valid(b) "
                f"THEN json_transform(a, '{args.json_call_type}') IS NOT DISTINCT FROM json_transform(b, '{args.json_call_type}') END")
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
    b.add_argument("--json-call-type", required=True)
    args = p.parse_args()
    {"count": cmd_count, "build": cmd_build}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
