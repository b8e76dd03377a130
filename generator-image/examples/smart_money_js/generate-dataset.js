#!/usr/bin/env node
// The command-mode twin of smart_money.generate, with the original script's interface:
//   node generate-dataset.js --items "SYM:2025-01-31,SYM:2025-02-28" --name shard-00003
// writes data/training/smart-money-flow/<name>.csv relative to the working directory.
// Same upstream calls (with the same latency), same numbers, same CSV text as the SDK twin.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

const LATENCY_MS = Number(process.env.SMF_LATENCY_MS || "20");

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i === -1 || i + 1 >= process.argv.length) throw new Error(`missing ${name}`);
  return process.argv[i + 1];
}

function unit(...parts) {
  const hex = crypto.createHash("sha256").update(parts.join(":")).digest("hex");
  return parseInt(hex.slice(0, 8), 16) % 1000000;
}

function monthEnds(startYear = 2023, months = 36) {
  const out = [];
  for (let k = 0; k < months; k++) {
    const year = startYear + Math.floor(k / 12), month = (k % 12) + 1;
    const last = new Date(Date.UTC(year, month, 0)).getUTCDate();
    out.push(`${year}-${String(month).padStart(2, "0")}-${String(last).padStart(2, "0")}`);
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const memo = new Map();
async function cached(key, fn) {
  if (!memo.has(key)) memo.set(key, fn());
  return memo.get(key);
}

const DATES = monthEnds(2023, 96); // the upstream's whole history, as in smart_money/universe.py
async function priceHistory(symbol) {
  await sleep(LATENCY_MS);
  const base = 20 + unit("base", symbol) / 10000;
  return DATES.map((d) => base + unit("close", symbol, d) / 100000);
}
async function marketData(date) {
  await sleep(LATENCY_MS);
  return { market_return: (unit("mkt", date) - 500000) / 10000000, vix: 10 + unit("vix", date) / 40000 };
}
async function institutionalFlow(symbol, date) {
  await sleep(LATENCY_MS);
  return (unit("flow", symbol, date) - 500000) / 1000;
}

// Python's repr of a float: integral values keep a ".0".
const num = (x) => (Number.isInteger(x) ? x.toFixed(1) : String(x));

async function main() {
  const ids = arg("--items").split(",").filter(Boolean);
  const name = arg("--name");
  const rows = ["symbol,date,close,momentum_3m,market_return,vix,flow,label"];
  for (const id of ids) {
    const [symbol, date] = id.split(":");
    const closes = await cached(`prices:${symbol}:${DATES[0]}:${DATES[DATES.length - 1]}`, () => priceHistory(symbol));
    const market = await cached(`market:${date}`, () => marketData(date));
    const flow = await institutionalFlow(symbol, date);
    const i = DATES.indexOf(date);
    const close = closes[i];
    const past = closes[Math.max(0, i - 3)];
    const momentum = (close - past) / past;
    const nxt = i + 1 < closes.length ? closes[i + 1] : close;
    const forward = (nxt - close) / close;
    const label = forward - market.market_return > 0 ? 1 : 0;
    rows.push([symbol, date, num(close), num(momentum), num(market.market_return), num(market.vix), num(flow), label].join(","));
    console.log(`✓ Example generated ${id}`);
  }
  const out = path.join("data", "training", "smart-money-flow", `${name}.csv`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out + ".tmp", rows.join("\n") + "\n");
  fs.renameSync(out + ".tmp", out);
  console.log(`Total Examples: ${ids.length}`);
}

main().catch((err) => { console.error(err); process.exit(1); });
