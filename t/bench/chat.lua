-- wrk script of the aihub benchmark (t/bench/run.sh).
--
-- Environment:
--   BENCH_KEY        the API key (Authorization: Bearer ...), if any
--   BENCH_KEYS_FILE  a file of keys, one a line: each request takes the
--                    next (round robin per thread; memory test)
--   BENCH_STREAM=1   "stream": true (+ include_usage), and the header
--                    x-bench-stream: 1 that makes the stub answer SSE
--   BENCH_MODEL      model id (mock-basic)
--   BENCH_PORTKEY    custom host URL: sends Portkey's routing headers
--   BENCH_DELAY_MS   mean pause of each connection between requests
--                    (fractional; randomised 0..2x): fixed-rate mode
--
-- done() prints one line "BENCH k=v ..." that run.sh parses; latencies
-- in microseconds.  Each answer that is not 2xx is counted by its status
-- too ("status_429=12 status_503=3": wrk's own "status" counts only those
-- over 399, in one number).

local key = os.getenv("BENCH_KEY")
local keys_file = os.getenv("BENCH_KEYS_FILE")
local stream = os.getenv("BENCH_STREAM") == "1"
local model = os.getenv("BENCH_MODEL") or "mock-basic"
local portkey = os.getenv("BENCH_PORTKEY")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"

if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
end

if portkey then
    wrk.headers["x-portkey-provider"] = "openai"
    wrk.headers["x-portkey-custom-host"] = portkey
    if not key or key == "" then
        wrk.headers["Authorization"] = "Bearer sk-bench-stub"
    end
end

local body = '{"model":"' .. model .. '","messages":[{"role":"system",'
    .. '"content":"You are a helpful assistant."},{"role":"user",'
    .. '"content":"Say hello to the benchmark in one short sentence."}],'
    .. '"max_tokens":64'

if stream then
    wrk.headers["x-bench-stream"] = "1"
    body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
end

wrk.body = body .. '}'

if keys_file then
    local keys = {}
    local n = 0
    local i = 0

    for line in io.lines(keys_file) do
        n = n + 1
        keys[n] = line
    end

    function init(args)
        -- threads start at different offsets
        i = math.random(n) - 1
    end

    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end

    function request()
        i = i % n + 1
        headers["Authorization"] = "Bearer " .. keys[i]
        return wrk.format(nil, nil, headers, wrk.body)
    end
end

if delay_ms and delay_ms > 0 then
    function delay()
        -- wrk's timers have 1 ms resolution: draw floor or ceil so that
        -- the mean is delay_ms, with some spread to avoid lockstep
        local d = delay_ms * 2 * math.random()
        local f = math.floor(d)
        if math.random() < d - f then f = f + 1 end
        return f
    end
end

-- per thread (each has its own Lua state): non-2xx answers by status
codes = {}

function response(status, headers, body)
    if status < 200 or status > 299 then
        codes[status] = (codes[status] or 0) + 1
    end
end

local threads = {}

function setup(thread)
    threads[#threads + 1] = thread
end

function done(summary, latency, requests)
    local e = summary.errors
    local all = {}
    local list = {}

    for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("codes") or {}) do
            if not all[status] then
                list[#list + 1] = status
            end
            all[status] = (all[status] or 0) + n
        end
    end

    table.sort(list)

    local by_status = ""
    for _, status in ipairs(list) do
        by_status = by_status .. string.format(" status_%d=%d", status,
                                               all[status])
    end

    io.write(string.format(
        "BENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d "
        .. "write=%d status=%d timeout=%d p50=%d p90=%d p99=%d p999=%d "
        .. "mean=%.1f max=%d%s\n",
        summary.requests, summary.duration, summary.bytes, e.connect,
        e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9),
        latency.mean, latency.max, by_status))
end
