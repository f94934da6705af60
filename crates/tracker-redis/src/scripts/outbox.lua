-- Helpers of the outbox scripts (prepended to them).

-- The server's clock, in epoch milliseconds.
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- A number as a decimal integer string (Lua would write large ones in exponent form).
local function decimal(n)
  return string.format('%.0f', n)
end
