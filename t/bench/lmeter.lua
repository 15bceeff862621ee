-- The bench's Lua gateways (t/bench/bench.pl), written the way an
-- OpenResty gateway is (lua-nginx-module, lua-cjson, cosockets).
--
-- L runs check() alone: the key looked up by SHA-1 in a shared dict, a
-- quota counter and a per-key rate check.  LM is L plus what G does to
-- bill a call:
--
--   access     check(), then the body decoded with cjson, the model
--              checked against the plan's list, the provider's key put in
--              place of the caller's
--   body       the answer's chunks kept until its end
--   log        the answer decoded, its usage read, the cost worked out,
--              a usage event (the fields of G's) encoded and buffered
--   timer      every 10 ms the worker's buffered events leave for Redis
--              in one XADD, as G's batches do (a stream of its own, capped:
--              nothing drains it)
--
-- Not a product: it answers the bench's calls and refuses the rest.

local cjson = require "cjson.safe"

local _M = {}

local redis_host, redis_port
local buf, nbuf = {}, 0
local seq = 0
local node = "lm"

-- the plans' models (G's bench account is on "pro": every model)
local models = { ["mock-basic"] = true, ["mock-premium"] = true }

-- µ$ per million tokens, as the catalog prices mock-basic (sql/001_schema.sql)
local price_in, price_out = 150000, 600000

function _M.init(keys)
    local dict = ngx.shared.bench_keys
    for k, rec in pairs(keys) do
        dict:set(ngx.sha1_bin(k), rec)
    end
end

local function refuse(status, msg)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say('{"error":{"message":"', msg, '","type":"invalid_request_error"}}')
    return ngx.exit(status)
end

-- L's checks; returns the caller's key, account and plan
function _M.check()
    local auth = ngx.var.http_authorization
    if not auth or #auth < 8 then
        return refuse(401, "missing key")
    end
    local rec = ngx.shared.bench_keys:get(ngx.sha1_bin(auth:sub(8)))
    if not rec then
        return refuse(401, "invalid key")
    end
    local account, plan, rpm = rec:match("^(%d+)|(%w+)|(%d+)$")
    rpm = tonumber(rpm)
    local q = ngx.shared.bench_quota:incr("q:" .. account, 1, 0)
    if q > 2000000000 then
        return refuse(429, "quota")
    end
    if rpm > 0 then
        local w = "r:" .. auth .. ":" .. math.floor(ngx.now() / 60)
        local n = ngx.shared.bench_rate:incr(w, 1, 0, 120)
        if n > rpm then
            return refuse(429, "rate")
        end
    end
    return auth, account, plan
end

function _M.access()
    local auth, account, plan = _M.check()

    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    local req = body and cjson.decode(body)
    if type(req) ~= "table" or type(req.model) ~= "string"
       or type(req.messages) ~= "table"
    then
        return refuse(400, "bad body")
    end
    if not models[req.model] then
        return refuse(404, "no such model")
    end

    local ctx = ngx.ctx
    ctx.account = tonumber(account)
    ctx.plan = plan
    ctx.model = req.model
    ctx.key = auth:sub(8, 22)
    ctx.start = ngx.now()

    seq = seq + 1
    ctx.id = string.format("%012x%08x%012x", math.floor(ctx.start * 1000),
                           ngx.worker.pid(), seq)
    ngx.req.set_header("Authorization", "Bearer stub-secret")
end

function _M.header()
    ngx.header["x-request-id"] = ngx.ctx.id
end

function _M.body()
    local ctx = ngx.ctx
    local chunk = ngx.arg[1]
    if chunk ~= "" then
        local t = ctx.chunks
        if not t then
            t = {}
            ctx.chunks = t
        end
        t[#t + 1] = chunk
    end
end

function _M.log()
    local ctx = ngx.ctx
    if not ctx.id then
        return
    end
    local answer = ctx.chunks and cjson.decode(table.concat(ctx.chunks))
    local u = type(answer) == "table" and answer.usage
    if type(u) ~= "table" then
        u = {}
    end
    local p = tonumber(u.prompt_tokens) or 0
    local c = tonumber(u.completion_tokens) or 0
    local ev = cjson.encode({
        v = 1, id = ctx.id, ts = math.floor(ctx.start * 1000), node = node,
        account = ctx.account, key = ctx.key, plan = ctx.plan,
        model = ctx.model, provider = "mock",
        prompt_tokens = p, completion_tokens = c,
        total_tokens = tonumber(u.total_tokens) or p + c,
        cost_micros = math.floor((p * price_in + c * price_out + 500000)
                                 / 1000000),
        status = ngx.status, streamed = false, aborted = false,
        estimated = u.prompt_tokens == nil,
        latency_ms = math.floor((ngx.now() - ctx.start) * 1000),
    })
    nbuf = nbuf + 1
    buf[nbuf] = ev
end

local function flush(premature)
    if nbuf == 0 or premature then
        return
    end
    local events = table.concat(buf, "\n", 1, nbuf)
    buf, nbuf = {}, 0

    local sock = ngx.socket.tcp()
    sock:settimeout(1000)
    local ok, err = sock:connect(redis_host, redis_port)
    if not ok then
        ngx.log(ngx.ERR, "lmeter: redis: ", err)
        return
    end
    local cmd = "*8\r\n$4\r\nXADD\r\n$14\r\naihub:bench:lm\r\n$6\r\nMAXLEN\r\n"
                .. "$1\r\n~\r\n$4\r\n1000\r\n$1\r\n*\r\n$6\r\nevents\r\n$"
                .. #events .. "\r\n" .. events .. "\r\n"
    ok, err = sock:send(cmd)
    local line
    if ok then
        line, err = sock:receive("*l")
    end
    if not line or line:sub(1, 1) == "-" then
        ngx.log(ngx.ERR, "lmeter: XADD: ", line or err)
        sock:close()
        return
    end
    sock:setkeepalive(60000, 4)
end

function _M.init_worker(host, port)
    redis_host, redis_port = host, port
    ngx.timer.every(0.01, flush)
end

return _M
