#!/bin/sh
# STUB of the Claude Code CLI, for the gateway-overhead benchmark only (NOT the real CLI).
# A POSIX shell script so that spawning it costs ~1 ms and the benchmark measures the gateway.
# Each user line gets one canned turn of 8 text deltas; control requests get an empty success.
S='"session_id":"stub","parent_tool_use_id":null,"uuid":"u"'
while IFS= read -r line; do
  case "$line" in
    *'"control_request"'*)
      id=${line#*\"request_id\":\"}; id=${id%%\"*}
      printf '{"type":"control_response","response":{"subtype":"success","request_id":"%s","response":{"version":"stub","claude_code_version":"stub","models":[{"value":"sonnet","resolvedModel":"claude-stub"}]}}}\n' "$id"
      ;;
    *'"user"'*)
      printf '%s\n' \
'{"type":"system","subtype":"init","cwd":"/","session_id":"stub","tools":[],"model":"claude-stub","permissionMode":"default"}' \
'{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_stub","model":"claude-stub","usage":{"input_tokens":10,"output_tokens":1}}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok0 "}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok1 "}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok2 "}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok3 "}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok4 "}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok5 "}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok6 "}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok7 "}},'"$S"'}' \
'{"type":"assistant","message":{"id":"msg_stub","model":"claude-stub","content":[{"type":"text","text":"tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "}]},'"$S"'}' \
'{"type":"stream_event","event":{"type":"content_block_stop","index":0},'"$S"'}' \
'{"type":"stream_event","event":{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null}},'"$S"'}' \
'{"type":"stream_event","event":{"type":"message_stop"},'"$S"'}' \
'{"type":"result","subtype":"success","is_error":false,"session_id":"stub","result":"tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ","stop_reason":"end_turn","total_cost_usd":0.0001,"num_turns":1,"usage":{"input_tokens":10,"output_tokens":8,"cache_read_input_tokens":0,"cache_creation_input_tokens":0}}'
      ;;
  esac
done
