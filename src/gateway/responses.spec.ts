import { responsesToChat, ResponsesTap } from './responses';
import { OpenAIError, refused } from './errors';

const mapped = (body: Record<string, unknown>) => {
  const r = responsesToChat(body);
  if (refused(r)) throw new Error(`refused: ${r.message}`);
  return r;
};
const refusal = (body: unknown) => responsesToChat(body) as OpenAIError;

/** A chat completion chunk stream as an engine sends it. */
const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const usage = `data: ${JSON.stringify({ id: 'c1', choices: [], usage: { prompt_tokens: 5, completion_tokens: 3 } })}\n\n`;

/** Runs a chat stream through the tap cut into pieces of `size` bytes; returns the Responses events. */
function translate(stream: string, size: number) {
  const tap = new ResponsesTap(true, 200, mapped({ model: 'default', input: 'hi', stream: true }).request);
  const bytes = Buffer.from(stream, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i += size) out += tap.push(bytes.subarray(i, i + size)).toString('utf8');
  out += tap.flush().toString('utf8');
  const events = out
    .split('\n\n')
    .filter(Boolean)
    .map((e) => {
      const [head, data] = e.split('\n');
      return { event: head.slice('event: '.length), data: JSON.parse(data.slice('data: '.length)) as Record<string, unknown> };
    });
  return { events, usage: tap.result() };
}

describe('the Responses adapter', () => {
  describe('request mapping', () => {
    it('should turn instructions, messages and options into the chat request', () => {
      const { chat, request } = mapped({
        model: 'm',
        instructions: 'be brief',
        input: [
          { role: 'developer', content: 'rules' },
          {
            role: 'user',
            content: [
              { type: 'input_text', text: 'look: ' },
              { type: 'input_image', image_url: 'https://x/a.png' },
            ],
          },
        ],
        max_output_tokens: 9,
        temperature: 0.2,
        seed: 3,
        text: { format: { type: 'json_schema', name: 'w', schema: { type: 'object' }, strict: true } },
        reasoning: { effort: 'low' },
        store: true,
      });
      expect(chat).toEqual({
        model: 'm',
        stream: false,
        max_tokens: 9,
        temperature: 0.2,
        seed: 3,
        reasoning_effort: 'low',
        response_format: { type: 'json_schema', json_schema: { name: 'w', schema: { type: 'object' }, strict: true } },
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'system', content: 'rules' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'look: ' },
              { type: 'image_url', image_url: { url: 'https://x/a.png' } },
            ],
          },
        ],
      });
      expect(request.echo).toMatchObject({ instructions: 'be brief', max_output_tokens: 9, store: false });
    });

    it('should turn function tools, a forced choice, and calls with their outputs into chat tools and messages', () => {
      const { chat } = mapped({
        model: 'm',
        tools: [{ type: 'function', name: 'f', parameters: { type: 'object' }, strict: true }],
        tool_choice: { type: 'function', name: 'f' },
        input: [
          { role: 'user', content: 'go' },
          { type: 'function_call', call_id: 'a', name: 'f', arguments: '{}' },
          { type: 'function_call', call_id: 'b', name: 'f', arguments: '{"x":1}' },
          { type: 'function_call_output', call_id: 'a', output: 'one' },
          { type: 'function_call_output', call_id: 'b', output: { n: 2 } },
        ],
      });
      expect(chat.tools).toEqual([{ type: 'function', function: { name: 'f', parameters: { type: 'object' }, strict: true } }]);
      expect(chat.tool_choice).toEqual({ type: 'function', function: { name: 'f' } });
      expect(chat.messages).toEqual([
        { role: 'user', content: 'go' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'a', type: 'function', function: { name: 'f', arguments: '{}' } },
            { id: 'b', type: 'function', function: { name: 'f', arguments: '{"x":1}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'a', content: 'one' },
        { role: 'tool', tool_call_id: 'b', content: '{"n":2}' },
      ]);
    });

    it.each([
      [{ model: 'm', input: 'x', previous_response_id: 'r' }, 'previous_response_id'],
      [{ model: 'm', input: 'x', background: true }, 'background'],
      [{ model: 'm', input: 'x', tools: [{ type: 'file_search' }] }, 'tools[0].type'],
      [{ model: 'm', input: 'x', tool_choice: { type: 'web_search' } }, 'tool_choice'],
      [{ model: 'm', input: 'x', text: { format: { type: 'xml' } } }, 'text.format.type'],
      [{ model: 'm', input: 'x', truncation: 'auto' }, 'truncation'],
      [{ model: 'm', input: [{ type: 'reasoning', summary: [] }] }, 'input[0].type'],
      [{ model: 'm', input: [{ role: 'robot', content: 'x' }] }, 'input[0].role'],
      [{ model: 'm', input: [] }, 'input'],
      [{ input: 'x' }, 'model'],
      [{ model: 'm', input: 'x', logit_bias: {} }, 'logit_bias'],
    ])('should refuse %j naming %s', (body, param) => {
      expect(refusal(body)).toMatchObject({ ok: false, status: 400, param });
    });

    it('should accept fields that ask for nothing (an empty include, background false)', () => {
      expect(mapped({ model: 'm', input: 'x', include: [], background: false }).chat.messages).toEqual([{ role: 'user', content: 'x' }]);
    });
  });

  describe('the event stream', () => {
    const text =
      chunk({ role: 'assistant', content: '' }) +
      chunk({ content: 'héllo' }) +
      chunk({ content: ' wörld' }) +
      chunk({}, 'stop') +
      usage +
      'data: [DONE]\n\n';

    it.each([1, 3, 7, 4096])('should give the same events whatever the chunk size (%i bytes), UTF-8 split included', (size) => {
      const { events, usage: u } = translate(text, size);
      expect(events.map((e) => e.event)).toEqual([
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        'response.output_text.delta',
        'response.output_text.delta',
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.completed',
      ]);
      expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
      expect(events.every((e) => e.data.type === e.event)).toBe(true);
      expect(events[6].data.text).toBe('héllo wörld');
      const done = events.at(-1)!.data.response as Record<string, unknown>;
      expect(done).toMatchObject({ status: 'completed', usage: { input_tokens: 5, output_tokens: 3, total_tokens: 8 } });
      expect(u).toEqual({ promptTokens: 5, completionTokens: 3, reported: true });
    });

    it('should stream tool calls as function_call items with their argument deltas', () => {
      const calls =
        chunk({
          role: 'assistant',
          content: null,
          tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a"' } }],
        }) +
        chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }) +
        chunk({}, 'tool_calls') +
        'data: [DONE]\n\n';
      const { events } = translate(calls, 5);
      expect(events.map((e) => e.event)).toEqual([
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.function_call_arguments.delta',
        'response.function_call_arguments.delta',
        'response.function_call_arguments.done',
        'response.output_item.done',
        'response.completed',
      ]);
      expect(events[5].data).toMatchObject({ arguments: '{"a":1}', name: 'f' });
      expect(events[6].data.item).toMatchObject({
        type: 'function_call',
        call_id: 'call_1',
        name: 'f',
        arguments: '{"a":1}',
        status: 'completed',
      });
    });

    it('should end a stream the replica broke off with the error event, after what it had sent', () => {
      const tap = new ResponsesTap(true, 200, mapped({ model: 'm', input: 'x', stream: true }).request);
      const first = tap.push(Buffer.from(chunk({ content: 'a' }))).toString();
      const last = tap
        .failure({ ok: false, status: 502, type: 'server_error', code: 'upstream_error', message: 'replica failed mid-stream: reset' })
        .toString();
      expect(first).toContain('event: response.output_text.delta');
      expect(last).toMatch(
        /^event: error\ndata: \{"type":"error","sequence_number":\d+,"code":"upstream_error","message":"replica failed mid-stream: reset","param":null\}\n\n$/,
      );
    });

    it('should pass an upstream error through unchanged', () => {
      const tap = new ResponsesTap(false, 400, mapped({ model: 'm', input: 'x' }).request);
      const err = Buffer.from('{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}');
      expect(Buffer.concat([tap.push(err), tap.flush()]).toString()).toBe(err.toString());
    });
  });
});
