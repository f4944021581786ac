-- ringlab.lua: a Wireshark dissector for ringlab's wire format.
--
-- Written from ringlab's own codecs (ring/src/wire.rs, ring/src/pack.rs, ring/src/auth.rs,
-- sync/src/msg.rs, sync/src/app.rs, sync/src/store/transport.rs,
-- sync/src/store/chunk_msg.rs); keep it in step with them. Every UDP payload on port 5405
-- is one of:
--
--   "RL" ring packet: magic u16, version u8 (2), type u8, sender u32, ring id (rep u32,
--        seq u64), then the type's body:
--        0 token, 1 mcast, 2 merge_detect, 3 join, 4 commit_token, 5 token_hold_cancel,
--        6 leave. An mcast's payload is a packed frame (count u16, items), each item a whole
--        application message or a fragment of one; a whole message is shown as a sync-layer
--        message when it parses as one.
--   "RS" service datagram: magic, service u16, then the service's bytes (the store's
--        chunk transfer: an "RT" transport datagram, a fragment or an ack; a message in one
--        fragment is shown as a chunk-protocol message).
--   "RT" a transport datagram on its own.
--
-- Any of them may end with the HMAC trailer of a keyed cluster (56 bytes: tx u32, tx_inc
-- u32, rx u32, rx_inc u32, counter u64, mac [32]). The "auth" preference says whether
-- it is there: auto (the default) finds it from the body's own lengths.
--
-- Every field is filterable as ringlab.<message>.<field> (ringlab.token.aru,
-- ringlab.mcast.seq, ringlab.join.proc, ...); ringlab.msg is the message's name. A packet
-- that ringlab's decoders would refuse gets expert info (group malformed, severity error)
-- saying why.
--
-- Install: `ringlab dissector --install` (copies it to ~/.local/lib/wireshark/plugins/),
-- or run `tshark -X lua_script:dissector/ringlab.lua -r FILE`.

local p = Proto("ringlab", "ringlab token ring")

local RING_PORT = 5405
local TRAILER_LEN = 56
local RTR_MAX = 64
local PROCESSORS_MAX = 384
local FRAME_MAX = 65000
local ITEMS_MAX = 65535
local MESSAGE_MAX = 1048576
local ITEM_HEADER_LEN = 32
local SERVICES_MAX = 256
local MAX_KEY = 1024
local MAX_CHUNK_KEYS = 16384

local msg_types = {
    [0] = "token", [1] = "mcast", [2] = "merge_detect", [3] = "join",
    [4] = "commit_token", [5] = "token_hold_cancel", [6] = "leave",
}
local services = { [2] = "checkpoint", [3] = "resources", [4] = "store", [5] = "kml" }
local sync_kinds = { [0] = "barrier", [1] = "service_list", [2] = "service_data" }
local sync_channels = { [1] = "sync", [2] = "operation" }
local transport_kinds = { [1] = "fragment", [2] = "ack" }
local chunk_ops = {
    [1] = "start", [2] = "start_reply", [3] = "heartbeat", [4] = "heartbeat_reply",
    [5] = "finish", [6] = "start_chunks", [7] = "chunk", [8] = "chunk_reply",
    [9] = "finish_reply", [10] = "abort", [11] = "get_cookie", [12] = "cookie",
    [13] = "get_chunk",
}

local F = {}
local function add(name, f) F[name] = f; table.insert(p.fields, f) end
local function u8(n, d, vs, mask) add(n, ProtoField.uint8("ringlab." .. n, d, base.DEC, vs, mask)) end
local function u16(n, d, vs) add(n, ProtoField.uint16("ringlab." .. n, d, base.DEC, vs)) end
local function u32(n, d) add(n, ProtoField.uint32("ringlab." .. n, d, base.DEC)) end
local function u64(n, d) add(n, ProtoField.uint64("ringlab." .. n, d, base.DEC)) end
local function hex32(n, d) add(n, ProtoField.uint32("ringlab." .. n, d, base.HEX)) end
local function bytes(n, d) add(n, ProtoField.bytes("ringlab." .. n, d)) end
local function str(n, d) add(n, ProtoField.string("ringlab." .. n, d)) end
local function bool(n, d, mask) add(n, ProtoField.bool("ringlab." .. n, d, 8, nil, mask)) end

-- Common.
str("msg", "Message")
add("magic", ProtoField.string("ringlab.magic", "Magic"))
u8("version", "Version")
u8("type", "Type", msg_types)
u32("sender", "Sender")
u32("ring.rep", "Ring representative")
u64("ring.seq", "Ring seq")
-- Token.
u64("token.token_seq", "Token seq")
u64("token.seq", "Highest seq")
u64("token.aru", "ARU")
u32("token.aru_addr", "ARU holder")
u32("token.fcc", "Flow control count")
u32("token.backlog", "Backlog")
u8("token.retrans_flg", "Retransmit flag")
u16("token.rtr_count", "Retransmit requests")
u64("token.rtr", "Retransmit request seq")
-- Mcast.
u64("mcast.seq", "Seq")
u8("mcast.flags", "Flags")
bool("mcast.safe", "Safe", 0x01)
bool("mcast.encapsulated", "Encapsulated", 0x02)
u32("mcast.encap.ring_rep", "Old ring representative")
u64("mcast.encap.ring_seq", "Old ring seq")
u64("mcast.encap.seq", "Old seq")
u32("mcast.encap.origin", "Old origin")
u8("mcast.encap.safe", "Old safe flag")
u32("mcast.payload_len", "Payload length")
u16("mcast.items", "Items in the frame")
u32("mcast.item.incarnation", "Origin incarnation")
u64("mcast.item.counter", "Message counter")
u64("mcast.item.sent_t_ns", "Sent at (ns)")
u32("mcast.item.total_len", "Message length")
u32("mcast.item.offset", "Offset")
u32("mcast.item.chunk_len", "Chunk length")
add("mcast.item.fragment", ProtoField.bool("ringlab.mcast.item.fragment", "Fragment of a message"))
bytes("mcast.item.data", "Data")
-- Merge detect.
u16("merge_detect.member_count", "Members")
u32("merge_detect.member", "Member")
u16("merge_detect.unheard_count", "Unheard")
u32("merge_detect.unheard", "Unheard node")
-- Join.
u64("join.ring_seq", "Ring seq seen")
u16("join.proc_count", "Processors")
u32("join.proc", "Processor")
u16("join.fail_count", "Failed")
u32("join.fail", "Failed processor")
u64("join.unheard_epoch", "Unheard epoch")
u16("join.unheard_count", "Unheard")
u32("join.unheard", "Unheard processor")
-- Commit token.
u64("commit_token.token_seq", "Token seq")
u16("commit_token.member_count", "Members")
u32("commit_token.member", "Member")
u16("commit_token.memb_index", "Entries filled")
u32("commit_token.entry.old_ring_rep", "Old ring representative")
u64("commit_token.entry.old_ring_seq", "Old ring seq")
u64("commit_token.entry.aru", "Old ARU")
u64("commit_token.entry.high_delivered", "High delivered")
u8("commit_token.entry.received_flg", "Received flag")
-- Leave.
u64("leave.ring_seq", "Ring seq seen")
-- Authentication trailer.
u32("auth.tx", "Transmitter")
u32("auth.tx_inc", "Transmitter incarnation")
u32("auth.rx", "Receiver (0: group)")
u32("auth.rx_inc", "Receiver incarnation")
u64("auth.counter", "Counter")
bytes("auth.mac", "HMAC-SHA256")
-- Sync layer (inside mcast items).
u8("sync.channel", "Channel", sync_channels)
u8("sync.kind", "Kind", sync_kinds)
u32("sync.ring_rep", "Sync ring representative")
u64("sync.ring_seq", "Sync ring seq")
u16("sync.service", "Service", services)
u16("sync.service_count", "Services")
u64("sync.state_token", "State token")
bytes("sync.payload", "Payload")
-- Service datagrams, the transfer transport, the chunk protocol.
u16("svc.service", "Service", services)
bytes("svc.data", "Service data")
u8("transfer.version", "Version")
u8("transfer.kind", "Kind", transport_kinds)
u64("transfer.nonce", "Nonce")
u64("transfer.seq", "Message seq")
u32("transfer.frag_no", "Fragment")
u32("transfer.frag_count", "Fragments")
u32("transfer.total_len", "Message length")
bytes("transfer.payload", "Fragment payload")
u32("transfer.cumulative", "Cumulative")
add("transfer.sack", ProtoField.uint64("ringlab.transfer.sack", "SACK bits", base.HEX))
u8("transfer.complete", "Complete")
u8("chunk.version", "Format version")
u8("chunk.op", "Op", chunk_ops)
u8("chunk.flags", "Flags")
bool("chunk.flags.last", "Last", 0x01)
bool("chunk.flags.retry", "Retry", 0x02)
bool("chunk.flags.crc", "CRC", 0x04)
bool("chunk.flags.reply_to", "Reply-to", 0x08)
bool("chunk.flags.chain", "Chain", 0x10)
u64("chunk.store_version", "Store version")
u64("chunk.id", "Transfer id / cookie")
u64("chunk.chunk_no", "Chunk number")
u32("chunk.reply_to", "Reply to")
bytes("chunk.last_key", "Last key")
hex32("chunk.crc", "CRC32C")
bytes("chunk.chain", "Chain hash")
u16("chunk.pair_count", "Pairs")
bytes("chunk.key", "Key")
u32("chunk.value_len", "Value length")

local e_malformed = ProtoExpert.new("ringlab.malformed", "Malformed ringlab packet",
    expert.group.MALFORMED, expert.severity.ERROR)
local e_truncated = ProtoExpert.new("ringlab.truncated", "Truncated ringlab packet",
    expert.group.MALFORMED, expert.severity.ERROR)
p.experts = { e_malformed, e_truncated }

p.prefs.auth = Pref.enum("HMAC trailer", 0, "Whether datagrams end with the HMAC trailer",
    { { 1, "auto", 0 }, { 2, "yes", 1 }, { 3, "no", 2 } }, false)

-- A reader over a TvbRange: every read names its field and stops the dissection with an
-- expert item when the packet ends first.
local Stop = {}
local R = {}
R.__index = R
local function reader(tvb, tree, offset, limit)
    return setmetatable({ tvb = tvb, tree = tree, pos = offset, limit = limit }, R)
end
function R:left() return self.limit - self.pos end
function R:fail(expert_field, text)
    self.tree:add_proto_expert_info(expert_field, text)
    error(Stop)
end
function R:need(n, field)
    if self:left() < n then
        self:fail(e_truncated, string.format("%s needs %d bytes, %d left", field, n, self:left()))
    end
end
function R:take(n, field)
    self:need(n, field)
    local r = self.tvb(self.pos, n)
    self.pos = self.pos + n
    return r
end
-- Adds field `name` of n bytes to `tree` (self.tree by default); returns its value.
function R:add(name, n, tree)
    local r = self:take(n, name)
    local v
    if n == 8 then v = r:uint64() elseif n >= 1 and n <= 4 then v = r:uint() end
    ;(tree or self.tree):add(F[name], r)
    return v, r
end
function R:bad(text) self:fail(e_malformed, text) end

local function num(v) -- a UInt64 or a number to a Lua number (exact below 2^53)
    if type(v) == "number" then return v end
    return tonumber(tostring(v))
end

-- A node list: count u16 (<= PROCESSORS_MAX), ids u32 strictly increasing, none 0.
local function nodes(rd, count_name, item_name, tree)
    local n = rd:add(count_name, 2, tree)
    if n > PROCESSORS_MAX then rd:bad(string.format("%s %d above %d", count_name, n, PROCESSORS_MAX)) end
    rd:need(4 * n, item_name)
    local last = 0
    local list = {}
    for _ = 1, n do
        local id = rd:add(item_name, 4, tree)
        if id == 0 then rd:bad("node id 0 in " .. item_name) end
        if id <= last then rd:bad(item_name .. " not sorted and duplicate-free") end
        last = id
        list[#list + 1] = id
    end
    return list
end

local function flag(rd, name, tree)
    local v = rd:add(name, 1, tree)
    if v > 1 then rd:bad("invalid " .. name) end
    return v
end

-- The sync layer's message in one whole application message (sync/src/msg.rs). Shown only
-- when it parses as one (plain load messages are opaque bytes).
local function looks_sync(tvb, off, len)
    if len < 1 then return false end
    local c = tvb(off, 1):uint()
    if c == 2 then
        return len >= 3 and services[tvb(off + 1, 2):uint()] ~= nil
    end
    if c ~= 1 or len < 16 then return false end
    local kind = tvb(off + 13, 1):uint()
    if kind == 0 then return len == 16 end
    if kind == 1 then return len == 16 + 10 * tvb(off + 14, 2):uint() end
    if kind == 2 then return services[tvb(off + 14, 2):uint()] ~= nil end
    return false
end

local function sync_msg(tvb, off, len, tree)
    local t = tree:add(p, tvb(off, len), "Sync-layer message")
    local rd = reader(tvb, t, off, off + len)
    local c = rd:add("sync.channel", 1)
    if c == 2 then
        local s = rd:add("sync.service", 2)
        if rd:left() > 0 then rd:add("sync.payload", rd:left()) end
        t:append_text(string.format(": operation of %s", services[s] or s))
        return
    end
    rd:add("sync.ring_rep", 4)
    rd:add("sync.ring_seq", 8)
    local k = rd:add("sync.kind", 1)
    t:append_text(": " .. (sync_kinds[k] or k))
    if k == 0 then
        rd:add("sync.service", 2)
    elseif k == 1 then
        local n = rd:add("sync.service_count", 2)
        for _ = 1, n do
            rd:add("sync.service", 2)
            rd:add("sync.state_token", 8)
        end
    else
        rd:add("sync.service", 2)
        if rd:left() > 0 then rd:add("sync.payload", rd:left()) end
    end
end

-- An mcast's packed frame (ring/src/pack.rs).
local function packed_frame(tvb, off, len, tree)
    local t = tree:add(p, tvb(off, len), "Packed frame")
    local rd = reader(tvb, t, off, off + len)
    local n = rd:add("mcast.items", 2)
    for i = 1, n do
        rd:need(ITEM_HEADER_LEN, "item header")
        local it = t:add(p, tvb(rd.pos, ITEM_HEADER_LEN), "Item " .. i)
        rd:add("mcast.item.incarnation", 4, it)
        rd:add("mcast.item.counter", 8, it)
        rd:add("mcast.item.sent_t_ns", 8, it)
        local total = rd:add("mcast.item.total_len", 4, it)
        local offset = rd:add("mcast.item.offset", 4, it)
        local chunk = rd:add("mcast.item.chunk_len", 4, it)
        if total == 0 or total > MESSAGE_MAX then rd:bad("message length " .. total) end
        if chunk == 0 or offset + chunk > total then rd:bad("fragment outside its message") end
        local whole = offset == 0 and chunk == total
        it:add(F["mcast.item.fragment"], not whole):set_generated()
        local data_off = rd.pos
        rd:add("mcast.item.data", chunk, it)
        it:set_len(ITEM_HEADER_LEN + chunk)
        if whole and looks_sync(tvb, data_off, chunk) then
            sync_msg(tvb, data_off, chunk, it)
        end
    end
    if rd:left() ~= 0 then rd:bad(rd:left() .. " trailing bytes after the frame's items") end
end

local function token(rd)
    rd:add("token.token_seq", 8)
    local seq = rd:add("token.seq", 8)
    local aru = rd:add("token.aru", 8)
    rd:add("token.aru_addr", 4)
    rd:add("token.fcc", 4)
    rd:add("token.backlog", 4)
    flag(rd, "token.retrans_flg")
    local n = rd:add("token.rtr_count", 2)
    if n > RTR_MAX then rd:bad(string.format("rtr list %d above %d", n, RTR_MAX)) end
    if aru > seq then rd:bad("aru above seq") end
    for _ = 1, n do rd:add("token.rtr", 8) end
    return string.format("aru=%s seq=%s rtr=%d", aru, seq, n)
end

local function mcast(rd, tvb)
    local seq = rd:add("mcast.seq", 8)
    if num(seq) == 0 then rd:bad("mcast seq 0") end
    rd:need(1, "mcast flags")
    local flags = tvb(rd.pos, 1):uint()
    local ft = rd.tree:add(F["mcast.flags"], tvb(rd.pos, 1))
    ft:add(F["mcast.safe"], tvb(rd.pos, 1))
    ft:add(F["mcast.encapsulated"], tvb(rd.pos, 1))
    rd.pos = rd.pos + 1
    if bit32.band(flags, 0xFC) ~= 0 then rd:bad("mcast flags") end
    local info = string.format("seq=%s%s", seq, bit32.band(flags, 1) ~= 0 and " safe" or "")
    if bit32.band(flags, 2) ~= 0 then
        local et = rd.tree:add(p, tvb(rd.pos, math.min(25, rd:left())), "Encapsulated old-ring frame")
        rd:add("mcast.encap.ring_rep", 4, et)
        rd:add("mcast.encap.ring_seq", 8, et)
        local os = rd:add("mcast.encap.seq", 8, et)
        local origin = rd:add("mcast.encap.origin", 4, et)
        if origin == 0 then rd:bad("encapsulated origin 0") end
        if num(os) == 0 then rd:bad("encapsulated seq 0") end
        flag(rd, "mcast.encap.safe", et)
        info = info .. " encapsulated"
    end
    local len = rd:add("mcast.payload_len", 4)
    if len > FRAME_MAX then rd:bad(string.format("payload %d above %d", len, FRAME_MAX)) end
    rd:need(len, "payload")
    local off = rd.pos
    rd.pos = rd.pos + len
    local ok, err = pcall(packed_frame, tvb, off, len, rd.tree)
    if not ok and err ~= Stop then error(err) end
    if not ok then error(Stop) end
    return info
end

local function commit(rd, tvb)
    rd:add("commit_token.token_seq", 8)
    local members = nodes(rd, "commit_token.member_count", "commit_token.member")
    if #members == 0 then rd:bad("empty commit member list") end
    local n = rd:add("commit_token.memb_index", 2)
    if n > #members then rd:bad("memb_index above the member count") end
    for i = 1, n do
        rd:need(29, "commit entry")
        local et = rd.tree:add(p, tvb(rd.pos, 29), "Entry of member " .. members[i])
        rd:add("commit_token.entry.old_ring_rep", 4, et)
        rd:add("commit_token.entry.old_ring_seq", 8, et)
        rd:add("commit_token.entry.aru", 8, et)
        rd:add("commit_token.entry.high_delivered", 8, et)
        flag(rd, "commit_token.entry.received_flg", et)
    end
    return string.format("members=%d filled=%d", #members, n)
end

local function trailer(tvb, off, tree)
    local t = tree:add(p, tvb(off, TRAILER_LEN), "HMAC trailer")
    local rd = reader(tvb, t, off, off + TRAILER_LEN)
    rd:add("auth.tx", 4)
    rd:add("auth.tx_inc", 4)
    local rx = rd:add("auth.rx", 4)
    rd:add("auth.rx_inc", 4)
    rd:add("auth.counter", 8)
    rd:add("auth.mac", 32)
    t:append_text(rx == 0 and " (group)" or (" (to node " .. rx .. ")"))
end

-- Returns a ring packet's length from its own counts, or nil when it cannot tell (no
-- tree items, no expert info: only the auto mode's guess at a trailer).
-- Whether the last ring packet the auto mode looked at carried a trailer.
local seen_keyed = false

local function ring_len(tvb, total)
    local function u(off, n)
        if off + n > total then return nil end
        return tvb(off, n):uint()
    end
    local ty = u(3, 1)
    if ty == 0 then
        local n = u(57, 2)
        return n and 59 + 8 * n
    elseif ty == 1 then
        local flags = u(28, 1)
        if flags == nil then return nil end
        local at = 29 + (bit32.band(flags, 2) ~= 0 and 25 or 0)
        local len = u(at, 4)
        return len and at + 4 + len
    elseif ty == 2 then
        local a = u(20, 2)
        if a == nil then return nil end
        local b = u(22 + 4 * a, 2)
        return b and 24 + 4 * a + 4 * b
    elseif ty == 3 then
        local at = 28
        for i = 1, 3 do
            local n = u(at, 2)
            if n == nil then return nil end
            at = at + 2 + 4 * n
            if i == 2 then at = at + 8 end
        end
        return at
    elseif ty == 4 then
        local m = u(28, 2)
        if m == nil then return nil end
        local e = u(30 + 4 * m, 2)
        return e and 32 + 4 * m + 29 * e
    elseif ty == 5 then
        return 20
    elseif ty == 6 then
        return 28
    end
    return nil
end

-- Decides where the body ends: the trailer's 56 bytes are left over when there is one.
local function body_end(tvb, used_len, total)
    local mode = p.prefs.auth
    if mode == 1 and total >= TRAILER_LEN + 4 then return total - TRAILER_LEN, true end
    if mode == 2 then return total, false end
    if total - used_len == TRAILER_LEN and used_len >= 4 then return total - TRAILER_LEN, true end
    return total, false
end

-- A ring packet: returns its type's name and a summary.
local function ring_packet(tvb, tree, limit)
    local rd = reader(tvb, tree, 0, limit)
    rd:add("magic", 2)
    local v = rd:add("version", 1)
    if v ~= 2 then rd:bad("unsupported wire version " .. v) end
    local ty = rd:add("type", 1)
    local name = msg_types[ty]
    if name == nil then rd:bad("unknown message type " .. ty) end
    tree:add(F["msg"], name):set_generated()
    local sender = rd:add("sender", 4)
    if sender == 0 then rd:bad("node id 0 in sender") end
    local rep = rd:add("ring.rep", 4)
    local rseq = rd:add("ring.seq", 8)
    local info
    if ty == 0 then
        info = token(rd)
    elseif ty == 1 then
        info = mcast(rd, tvb)
    elseif ty == 2 then
        local m = nodes(rd, "merge_detect.member_count", "merge_detect.member")
        nodes(rd, "merge_detect.unheard_count", "merge_detect.unheard")
        info = "members=" .. #m
    elseif ty == 3 then
        rd:add("join.ring_seq", 8)
        local procs = nodes(rd, "join.proc_count", "join.proc")
        local fails = nodes(rd, "join.fail_count", "join.fail")
        rd:add("join.unheard_epoch", 8)
        nodes(rd, "join.unheard_count", "join.unheard")
        info = string.format("procs=%d fails=%d", #procs, #fails)
    elseif ty == 4 then
        info = commit(rd, tvb)
    elseif ty == 5 then
        info = ""
    else
        rd:add("leave.ring_seq", 8)
        info = ""
    end
    if rd:left() ~= 0 then rd:bad(rd:left() .. " trailing bytes after the body") end
    return name, string.format("%s from %d ring %d.%s %s", name, sender, rep, rseq, info)
end

-- A chunk-protocol message (sync/src/store/chunk_msg.rs) that fills one fragment.
local function chunk_msg(tvb, off, len, tree)
    local t = tree:add(p, tvb(off, len), "Chunk-protocol message")
    local rd = reader(tvb, t, off, off + len)
    local v = rd:add("chunk.version", 1)
    if v ~= 1 then rd:bad("unsupported chunk message version " .. v) end
    local op = rd:add("chunk.op", 1)
    if chunk_ops[op] == nil then rd:bad("unknown chunk op " .. op) end
    rd:need(1, "chunk flags")
    local flags = tvb(rd.pos, 1):uint()
    local ft = t:add(F["chunk.flags"], tvb(rd.pos, 1))
    for _, f in ipairs({ "last", "retry", "crc", "reply_to", "chain" }) do
        ft:add(F["chunk.flags." .. f], tvb(rd.pos, 1))
    end
    rd.pos = rd.pos + 1
    if bit32.band(flags, 0xE0) ~= 0 then rd:bad("unknown chunk flags") end
    rd:add("chunk.store_version", 8)
    rd:add("chunk.id", 8)
    rd:add("chunk.chunk_no", 8)
    if bit32.band(flags, 0x08) ~= 0 then
        if rd:add("chunk.reply_to", 4) == 0 then rd:bad("reply_to 0") end
    end
    rd:need(1, "last_key presence")
    local present = tvb(rd.pos, 1):uint()
    rd.pos = rd.pos + 1
    if present == 1 then
        rd:need(4, "last_key length")
        local n = tvb(rd.pos, 4):uint()
        rd.pos = rd.pos + 4
        if n > MAX_KEY then rd:bad("last_key above " .. MAX_KEY) end
        rd:add("chunk.last_key", n)
    elseif present ~= 0 then
        rd:bad("last_key presence")
    end
    if bit32.band(flags, 0x04) ~= 0 then rd:add("chunk.crc", 4) end
    if bit32.band(flags, 0x10) ~= 0 then rd:add("chunk.chain", 32) end
    local pairs_n = rd:add("chunk.pair_count", 2)
    if pairs_n > MAX_CHUNK_KEYS then rd:bad("pair count above " .. MAX_CHUNK_KEYS) end
    for _ = 1, pairs_n do
        rd:need(4, "key length")
        local kn = tvb(rd.pos, 4):uint()
        rd.pos = rd.pos + 4
        if kn > MAX_KEY then rd:bad("key above " .. MAX_KEY) end
        rd:add("chunk.key", kn)
        local vn = rd:add("chunk.value_len", 4)
        rd:need(vn, "value")
        rd.pos = rd.pos + vn
    end
    if rd:left() ~= 0 then rd:bad(rd:left() .. " trailing bytes after the chunk message") end
    t:append_text(": " .. (chunk_ops[op] or op))
    return chunk_ops[op]
end

-- A transfer transport datagram (sync/src/store/transport.rs) at `off`, up to `limit`.
local function transfer(tvb, off, limit, tree)
    local t = tree:add(p, tvb(off, math.max(limit - off, 0)), "Transfer datagram")
    local rd = reader(tvb, t, off, limit)
    rd:need(2, "transfer magic")
    if tvb(off, 2):string() ~= "RT" then rd:bad("not a transfer datagram") end
    rd.pos = rd.pos + 2
    local v = rd:add("transfer.version", 1)
    if v ~= 1 then rd:bad("unsupported transfer version " .. v) end
    local kind = rd:add("transfer.kind", 1)
    rd:add("transfer.nonce", 8)
    local seq = rd:add("transfer.seq", 8)
    if kind == 1 then
        local no = rd:add("transfer.frag_no", 4)
        local count = rd:add("transfer.frag_count", 4)
        local total = rd:add("transfer.total_len", 4)
        if count == 0 or no >= count then rd:bad("fragment number outside its count") end
        local len = rd:left()
        local poff = rd.pos
        if len > 0 then rd:add("transfer.payload", len) end
        local info = string.format("transfer fragment %d/%d of message %s", no + 1, count, seq)
        if count == 1 and len == total and len > 0 then
            local op = chunk_msg(tvb, poff, len, t)
            info = info .. " chunk " .. op
        end
        return "transfer_fragment", info
    elseif kind == 2 then
        rd:add("transfer.cumulative", 4)
        rd:add("transfer.sack", 8)
        flag(rd, "transfer.complete")
        if rd:left() ~= 0 then rd:bad(rd:left() .. " trailing bytes after the ack") end
        return "transfer_ack", "transfer ack of message " .. tostring(seq)
    end
    rd:bad("unknown transfer kind " .. kind)
end

-- Finds where a service datagram's own bytes end (before a trailer) for the auto mode.
local function transfer_len(tvb, off, total)
    if total - off < 4 or tvb(off, 2):string() ~= "RT" then return nil end
    local kind = tvb(off + 3, 1):uint()
    if kind == 2 then return 33 end
    if kind == 1 and total - off >= 32 then
        local no = tvb(off + 20, 4):uint()
        local count = tvb(off + 24, 4):uint()
        local tl = tvb(off + 28, 4):uint()
        if count == 1 then return 32 + tl end
        -- Every fragment implies the message's fragment size (transport.rs): the last one
        -- by (total_len - len) / (count - 1), the others by being it. Try the payload with
        -- and without a trailer; where both fit, go by what the ring's packets showed.
        local function fits(len)
            if len <= 0 then return false end
            if no == count - 1 then
                local rest = tl - len
                return rest > 0 and rest % (count - 1) == 0 and rest / (count - 1) >= len
            end
            return math.ceil(tl / len) == count
        end
        local plain, keyed = total - off - 32, total - off - 32 - TRAILER_LEN
        local a, b = fits(plain), fits(keyed)
        if a and not b then return 32 + plain end
        if b and not a then return 32 + keyed end
        if seen_keyed and keyed >= 0 then return 32 + keyed end
        return 32 + plain
    end
    return nil
end

local function service_datagram(tvb, tree, total)
    local used = total
    local tl = transfer_len(tvb, 4, total)
    if tl ~= nil then used = 4 + tl end
    local limit, keyed = body_end(tvb, used, total)
    local rd = reader(tvb, tree, 0, limit)
    rd:add("magic", 2)
    local s = rd:add("svc.service", 2)
    local name, info = "svc_datagram", "service datagram of " .. (services[s] or s)
    if rd:left() >= 2 and tvb(4, 2):string() == "RT" then
        name, info = transfer(tvb, 4, limit, tree)
    elseif rd:left() > 0 then
        rd:add("svc.data", rd:left())
    end
    return name, info, keyed, limit
end

local function dissect(tvb, pinfo, tree)
    local total = tvb:len()
    if total < 2 then return 0 end
    local magic = tvb(0, 2):string()
    pinfo.cols.protocol = "RINGLAB"
    local t = tree:add(p, tvb(), "ringlab")
    local ok, err = pcall(function()
        local name, info, keyed, limit
        if magic == "RL" then
            -- The body is self-delimiting: a trailer is what is left after it.
            limit, keyed = body_end(tvb, ring_len(tvb, total) or total, total)
            seen_keyed = keyed
            name, info = ring_packet(tvb, t, limit)
        elseif magic == "RS" then
            name, info, keyed, limit = service_datagram(tvb, t, total)
        elseif magic == "RT" then
            local tl = transfer_len(tvb, 0, total)
            limit, keyed = body_end(tvb, tl or total, total)
            name, info = transfer(tvb, 0, limit, t)
        else
            t:add_proto_expert_info(e_malformed, "unknown magic " .. tostring(tvb(0, 2):bytes()))
            error(Stop)
        end
        if keyed then trailer(tvb, limit, t) end
        if magic ~= "RL" then t:add(F["msg"], name):set_generated() end
        t:append_text(": " .. name)
        pinfo.cols.info = info .. (keyed and " [keyed]" or "")
    end)
    if not ok then
        if err ~= Stop then
            t:add_proto_expert_info(e_malformed, "dissector error: " .. tostring(err))
        end
        pinfo.cols.info = "ringlab (malformed)"
    end
    return total
end

function p.dissector(tvb, pinfo, tree)
    return dissect(tvb, pinfo, tree)
end

-- Port 5405 (the namespaces' ring port; corosync's too, so this replaces its dissector
-- there), and a heuristic for other ports: "RL" version 2 with a known type, "RS" with a
-- known service, or "RT" version 1 with a known kind.
DissectorTable.get("udp.port"):add(RING_PORT, p)

local function heuristic(tvb, pinfo, tree)
    if tvb:len() < 4 then return false end
    local m = tvb(0, 2):string()
    local b2, b3 = tvb(2, 1):uint(), tvb(3, 1):uint()
    local ours = (m == "RL" and b2 == 2 and msg_types[b3] ~= nil and tvb:len() >= 20)
        or (m == "RS" and services[tvb(2, 2):uint()] ~= nil)
        or (m == "RT" and b2 == 1 and transport_kinds[b3] ~= nil)
    if not ours then return false end
    dissect(tvb, pinfo, tree)
    return true
end
p:register_heuristic("udp", heuristic)
