-- Shared by every workload script; bench/wrk.py puts it in front of the workload.
-- Data comes from the directory named by BENCH_DATA (written by bench/__main__.py):
--   ids.txt          one Patient id per line (loaded by the benchmark)
--   identifiers.txt  one url-encoded `system|value` token per line
--   patient.json     a Patient body with `__MRN__` (and `__ID__` for updates) to replace

local data_dir = os.getenv("BENCH_DATA") or "."
local threads = {}

local function read_lines(name)
  local lines = {}
  local file = io.open(data_dir .. "/" .. name, "r")
  if file == nil then return lines end
  for line in file:lines() do
    if line ~= "" then lines[#lines + 1] = line end
  end
  file:close()
  return lines
end

local function read_all(name)
  local file = io.open(data_dir .. "/" .. name, "r")
  if file == nil then return "" end
  local text = file:read("*a")
  file:close()
  return text
end

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

function init(args)
  ids = read_lines("ids.txt")
  identifiers = read_lines("identifiers.txt")
  patient_body = read_all("patient.json")
  counter = 0
  -- BENCH_RUN differs per run, so every created or updated Patient gets a distinct MRN.
  mrn_prefix = "BENCH-" .. (os.getenv("BENCH_RUN") or "run") .. "-" .. tid .. "-"
  statuses = {}
  math.randomseed(tid * 7919)
  json_headers = {["Content-Type"] = "application/fhir+json",
                  ["Accept"] = "application/fhir+json"}
  accept_headers = {["Accept"] = "application/fhir+json"}
  -- token.txt, when there, holds an access token every request carries
  local token = read_all("token.txt"):gsub("%s+", "")
  if token ~= "" then
    json_headers["Authorization"] = "Bearer " .. token
    accept_headers["Authorization"] = "Bearer " .. token
  end
end

function random_id()
  return ids[math.random(#ids)]
end

function read_request()
  return wrk.format("GET", "/fhir/Patient/" .. random_id(), accept_headers)
end

function create_request()
  counter = counter + 1
  local body = patient_body:gsub("__MRN__", mrn_prefix .. counter)
  return wrk.format("POST", "/fhir/Patient", json_headers, body)
end

function update_request()
  counter = counter + 1
  local id = random_id()
  local body = patient_body:gsub("__MRN__", mrn_prefix .. "U" .. counter)
  body = body:gsub("^{", '{"id":"' .. id .. '",', 1)
  return wrk.format("PUT", "/fhir/Patient/" .. id, json_headers, body)
end

function search_request()
  local token = identifiers[math.random(#identifiers)]
  return wrk.format("GET", "/fhir/Patient?identifier=" .. token, accept_headers)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Prints one line, `@@BENCH_JSON@@ {...}`, that bench/wrk.py parses; latencies in µs.
function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses")
    if seen ~= nil then
      for status, n in pairs(seen) do counts[status] = (counts[status] or 0) + n end
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local errors = summary.errors
  io.write(string.format(
    '@@BENCH_JSON@@ {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "stdev": %.1f, ' ..
    '"p50": %d, "p75": %d, "p90": %d, "p99": %d, "p999": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), table.concat(parts, ", ")))
end
