import OpenAI, { toFile } from 'openai';
import { audioSeconds, SPEECH_SAMPLE_RATE, wavHeader } from '../../src/common/media';
import { Stack, startStack } from '../support/stack';
import { eventually } from '../support/wait';

const weather = {
  type: 'object',
  properties: { city: { type: 'string' }, days: { type: 'integer' }, unit: { type: 'string', enum: ['c', 'f'] } },
  required: ['city', 'days', 'unit'],
  additionalProperties: false,
};

/**
 * The rest of the OpenAI surface through the gateway, with the official `openai` client: the Responses API
 * (an adapter over the replica's chat completions), legacy text completions, and tools, response_format and
 * sampling options passed through chat completions, streamed and not.
 */
describe('the OpenAI surface through the gateway (official openai client)', () => {
  let stack: Stack;
  let client: OpenAI;
  let deploymentId: string;
  beforeAll(async () => {
    stack = await startStack();
    const ws = await stack.workspace('TEAM');
    const d = await stack.deployed(ws.token, { name: 'surface' }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 });
    deploymentId = d.deploymentId;
    client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: d.apiKey, maxRetries: 0 });
  });
  afterAll(async () => {
    await stack?.close();
  });

  describe('/v1/responses', () => {
    it('should answer a string input with output_text, usage and the echoed request, incomplete at max_output_tokens', async () => {
      const r = await client.responses.create({ model: 'default', input: 'hello there', max_output_tokens: 7, instructions: 'be brief' });
      expect(r).toMatchObject({
        object: 'response',
        status: 'incomplete',
        incomplete_details: { reason: 'max_output_tokens' },
        model: 'default',
        instructions: 'be brief',
        max_output_tokens: 7,
        usage: { output_tokens: 7, input_tokens: expect.any(Number) },
      });
      expect(r.id).toMatch(/^resp_[0-9a-f]{32}$/);
      expect(r.output).toHaveLength(1);
      expect(r.output[0]).toMatchObject({ type: 'message', role: 'assistant', status: 'completed' });
      expect(r.output_text.split(' ')).toHaveLength(7);
      // The instructions reached the replica as a system message: the same input without them is answered differently.
      const plain = await client.responses.create({ model: 'default', input: 'hello there', max_output_tokens: 7 });
      expect(plain.output_text).not.toBe(r.output_text);
    });

    it('should take message items, and stream the Responses events that the SDK assembles into the same text', async () => {
      const input = [
        { role: 'developer' as const, content: 'answer in words' },
        { role: 'user' as const, content: [{ type: 'input_text' as const, text: 'what is a replica?' }] },
      ];
      const whole = await client.responses.create({ model: 'default', input, max_output_tokens: 12 });
      const stream = client.responses.stream({ model: 'default', input, max_output_tokens: 12 });
      const types: string[] = [];
      let deltas = '';
      stream.on('event', (e) => types.push(e.type));
      stream.on('response.output_text.delta', (e) => (deltas += e.delta));
      const final = await stream.finalResponse();
      expect(final.output_text).toBe(whole.output_text);
      expect(deltas).toBe(whole.output_text);
      expect(final.usage).toMatchObject({ output_tokens: 12 });
      expect(types.slice(0, 4)).toEqual([
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
      ]);
      expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(12);
      expect(types.slice(-4)).toEqual([
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.incomplete',
      ]);
    });

    it('should map function tools both ways: a function_call out, and its output back in as a tool message', async () => {
      const tools = [{ type: 'function' as const, name: 'get_weather', description: 'weather', parameters: weather, strict: true }];
      const r = await client.responses.create({ model: 'default', input: 'weather in Paris?', tools, tool_choice: 'required' });
      expect(r.status).toBe('completed');
      const call = r.output.find((o) => o.type === 'function_call');
      expect(call).toMatchObject({
        type: 'function_call',
        name: 'get_weather',
        call_id: expect.stringMatching(/^call_/),
        status: 'completed',
      });
      const args = JSON.parse((call as { arguments: string }).arguments) as Record<string, unknown>;
      expect(args).toEqual({ city: expect.any(String), days: expect.any(Number), unit: expect.stringMatching(/^[cf]$/) });

      // Streamed: the arguments arrive as deltas and the final output holds the whole call.
      const stream = client.responses.stream({ model: 'default', input: 'weather in Paris?', tools, tool_choice: 'required' });
      let argDeltas = '';
      stream.on('response.function_call_arguments.delta', (e) => (argDeltas += e.delta));
      const final = await stream.finalResponse();
      const streamed = final.output.find((o) => o.type === 'function_call') as { arguments: string; name: string };
      expect(streamed.name).toBe('get_weather');
      expect(argDeltas).toBe(streamed.arguments);
      expect(JSON.parse(streamed.arguments)).toEqual(args);

      // The call and its result go back as input items; the model answers in words.
      const next = await client.responses.create({
        model: 'default',
        tools,
        max_output_tokens: 3,
        input: [
          { role: 'user', content: 'weather in Paris?' },
          { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: (call as { arguments: string }).arguments },
          { type: 'function_call_output', call_id: 'call_1', output: '{"temp": 21}' },
        ],
      });
      expect(next.output[0].type).toBe('message');
      expect(next.output_text.split(' ')).toHaveLength(3);
    });

    it('should map text.format json_schema to response_format: the output is a JSON document of that schema', async () => {
      const r = await client.responses.create({
        model: 'default',
        input: 'the weather, as JSON',
        text: { format: { type: 'json_schema', name: 'weather', schema: weather, strict: true } },
      });
      expect(r.status).toBe('completed');
      expect(JSON.parse(r.output_text)).toEqual({
        city: expect.any(String),
        days: expect.any(Number),
        unit: expect.stringMatching(/^[cf]$/),
      });
      expect(r.text).toMatchObject({ format: { type: 'json_schema', name: 'weather' } });
    });

    it('should refuse what has no chat equivalent with a 400 naming the field', async () => {
      const refused = async (body: Record<string, unknown>) => {
        const e = (await client.responses.create(body as never).catch((err: unknown) => err)) as InstanceType<typeof OpenAI.APIError>;
        expect(e).toBeInstanceOf(OpenAI.BadRequestError);
        return { param: e.param, message: e.message, requestId: e.requestID };
      };
      expect(await refused({ model: 'default', input: 'hi', previous_response_id: 'resp_1' })).toMatchObject({
        param: 'previous_response_id',
        message: expect.stringContaining('send the whole conversation in `input`'),
        requestId: expect.stringMatching(/^req_/),
      });
      expect(await refused({ model: 'default', input: 'hi', tools: [{ type: 'web_search' }] })).toMatchObject({ param: 'tools[0].type' });
      expect(await refused({ model: 'default', input: 42 })).toMatchObject({ param: 'input' });
      expect(await refused({ model: 'default', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] })).toMatchObject(
        {
          param: 'input[0].content[0].type',
        },
      );
      expect(await refused({ model: 'default', input: 'hi', max_output_tokens: 0 })).toMatchObject({ param: 'max_output_tokens' });
      expect(await refused({ model: 'default', input: 'hi', frequency_penalty: 1 })).toMatchObject({ param: 'frequency_penalty' });
    });

    it('should roll a Response into usage like a chat completion', async () => {
      const before = await tokens();
      await client.responses.create({ model: 'default', input: 'count me', max_output_tokens: 9 });
      await eventually(async () => (await tokens()) >= before + 9, 10_000, 100);
    });
  });

  const tokens = async () =>
    Number(
      (await stack.prisma.usageRollup.aggregate({ where: { deploymentId }, _sum: { completionTokens: true } }))._sum.completionTokens ?? 0,
    );

  describe('/v1/completions', () => {
    it('should complete a prompt, plain and streamed, with usage', async () => {
      const r = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 6 });
      expect(r).toMatchObject({ object: 'text_completion', usage: { completion_tokens: 6 } });
      expect(r.choices[0]).toMatchObject({ index: 0, finish_reason: 'length' });
      expect(r.choices[0].text.trim().split(' ')).toHaveLength(6);
      const stream = await client.completions.create({ model: 'default', prompt: 'Once upon a time', max_tokens: 6, stream: true });
      let text = '';
      for await (const c of stream) text += c.choices[0]?.text ?? '';
      expect(text).toBe(r.choices[0].text);
      const bad = await client.completions
        .create({ model: 'default', prompt: 7 as never })
        .catch((e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
      expect(bad).toMatchObject({ status: 400, param: 'prompt' });
    });
  });

  describe('chat completions pass tools, response_format and sampling options through', () => {
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: weather } }];

    it('should return tool calls plain, and assembled from a stream by the SDK', async () => {
      const r = await client.chat.completions.create({
        model: 'default',
        messages: [{ role: 'user', content: 'weather?' }],
        tools,
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
      });
      expect(r.choices[0].finish_reason).toBe('tool_calls');
      const call = r.choices[0].message.tool_calls![0] as { function: { name: string; arguments: string } };
      expect(call.function.name).toBe('get_weather');
      const stream = client.chat.completions.stream({
        model: 'default',
        messages: [{ role: 'user', content: 'weather?' }],
        tools,
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
      });
      const final = await stream.finalChatCompletion();
      const streamed = final.choices[0].message.tool_calls![0] as { function: { name: string; arguments: string } };
      expect(streamed.function).toEqual(call.function);
      expect(JSON.parse(streamed.function.arguments)).toEqual({
        city: expect.any(String),
        days: expect.any(Number),
        unit: expect.any(String),
      });
    });

    it('should answer response_format json_schema with a document of the schema, streamed and not', async () => {
      const response_format = { type: 'json_schema' as const, json_schema: { name: 'weather', schema: weather, strict: true } };
      const messages = [{ role: 'user' as const, content: 'json please' }];
      const r = await client.chat.completions.create({ model: 'default', messages, response_format });
      const doc = JSON.parse(r.choices[0].message.content!) as Record<string, unknown>;
      expect(Object.keys(doc).sort()).toEqual(['city', 'days', 'unit']);
      const stream = await client.chat.completions.create({ model: 'default', messages, response_format, stream: true });
      let text = '';
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
      expect(JSON.parse(text)).toEqual(doc);
    });

    it('should pass the seed through: the same seed gives the same text, another seed other text', async () => {
      const ask = async (seed: number) =>
        (
          await client.chat.completions.create({
            model: 'default',
            messages: [{ role: 'user', content: 'hi' }],
            max_tokens: 8,
            seed,
            temperature: 0.7,
          })
        ).choices[0].message.content;
      const [a, b, c] = [await ask(1), await ask(1), await ask(2)];
      expect(a).toBe(b);
      expect(c).not.toBe(a);
    });
  });

  describe('images and audio', () => {
    let images: { client: OpenAI; deploymentId: string };
    let audio: { client: OpenAI; deploymentId: string };
    beforeAll(async () => {
      const ws = await stack.workspace('TEAM', 'media');
      for (const [task, name] of [
        ['IMAGE', 'pictures'],
        ['AUDIO', 'voices'],
      ] as const) {
        const d = await stack.deployed(ws.token, { name, task }, { mode: 'FLEX', minReplicas: 1, maxReplicas: 1 });
        const entry = { client: new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: d.apiKey, maxRetries: 0 }), deploymentId: d.deploymentId };
        if (task === 'IMAGE') images = entry;
        else audio = entry;
      }
    });
    const units = async (deploymentId: string) => {
      const s = await stack.prisma.usageRollup.aggregate({
        where: { deploymentId },
        _sum: { images: true, audioSeconds: true, costUsd: true },
      });
      return { images: s._sum.images ?? 0, audioSeconds: s._sum.audioSeconds ?? 0, costUsd: Number(s._sum.costUsd ?? 0) };
    };

    it('should generate PNG images of the asked size, the same for the same prompt, billed per image', async () => {
      const r = await images.client.images.generate({ model: 'default', prompt: 'a red cube', n: 2, size: '256x256' });
      expect(r.data).toHaveLength(2);
      const png = Buffer.from(r.data![0].b64_json!, 'base64');
      expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([256, 256]);
      const again = await images.client.images.generate({ model: 'default', prompt: 'a red cube', n: 1, size: '256x256' });
      expect(again.data![0].b64_json).toBe(r.data![0].b64_json);
      const used = await eventually(
        async () => {
          const u = await units(images.deploymentId);
          return u.images >= 3 && u;
        },
        10_000,
        100,
      );
      expect(used.costUsd).toBeCloseTo(3 * 0.02, 6);
      // The wrong route for the task says so.
      const chat = await images.client.chat.completions
        .create({ model: 'default', messages: [{ role: 'user', content: 'hi' }] })
        .catch((e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
      expect(chat).toMatchObject({ status: 400, code: 'unsupported_task' });
      const bad = await images.client.images
        .generate({ model: 'default', prompt: 'x', n: 11 })
        .catch((e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
      expect(bad).toMatchObject({ status: 400, param: 'n' });
    });

    it('should speak text as a WAV stream, and transcribe an uploaded WAV, both billed by the second', async () => {
      const input = 'hello there, this is thirty chars'; // 33 characters: 2.2 s at 15 a second
      const spoken = Buffer.from(
        await (await audio.client.audio.speech.create({ model: 'default', voice: 'alloy', input, response_format: 'wav' })).arrayBuffer(),
      );
      expect(spoken.toString('ascii', 0, 4)).toBe('RIFF');
      const seconds = audioSeconds(spoken.subarray(0, 44), spoken.length);
      expect(seconds).toBeCloseTo(input.length / 15, 2);

      // A 3 s recording (24 kHz, 16-bit mono silence), uploaded as a file.
      const wav = Buffer.concat([wavHeader(3 * SPEECH_SAMPLE_RATE * 2), Buffer.alloc(3 * SPEECH_SAMPLE_RATE * 2)]);
      const t = await audio.client.audio.transcriptions.create({
        model: 'default',
        file: await toFile(wav, 'clip.wav', { type: 'audio/wav' }),
      });
      expect(t.text.trim().split(' ').length).toBeGreaterThan(3);
      const again = await audio.client.audio.transcriptions.create({
        model: 'default',
        file: await toFile(wav, 'clip.wav', { type: 'audio/wav' }),
      });
      expect(again.text).toBe(t.text);
      const used = await eventually(
        async () => {
          const u = await units(audio.deploymentId);
          return u.audioSeconds >= seconds + 6 - 0.01 && u;
        },
        10_000,
        100,
      );
      expect(used.audioSeconds).toBeCloseTo(seconds + 6, 2);
      expect(used.costUsd).toBeCloseTo((seconds + 6) * 0.0001, 6);

      // An upload without its file is refused naming the field; so is a JSON body.
      const form = new FormData();
      form.append('model', 'default');
      const missing = await fetch(`${stack.url}/v1/audio/transcriptions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${audio.client.apiKey}` },
        body: form,
      });
      expect(missing.status).toBe(400);
      expect(((await missing.json()) as { error: { param: string } }).error.param).toBe('file');
      const json = await fetch(`${stack.url}/v1/audio/transcriptions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${audio.client.apiKey}`, 'content-type': 'application/json' },
        body: '{}',
      });
      expect(json.status).toBe(415);
    });
  });
});
