// A closeSession that holds nobody must not count as a wait when cycles of closes are broken
// (src/close-waits.ts): else a request that really awaits a close is answered `true` while the session
// it awaits still runs its request and has not run its hook (no cycle: that request ends on its own).
// Ways a wait holds nobody: a close started and given a handler only to keep its rejection handled
// (`.catch(() => {})`, the usual fire-and-forget), or one to log its outcome (`.then(log, ignore)`), both
// chained at the call, and an await its request gave up on (Promise.race with a timeout) before it ended,
// the session's process then running a later request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type SessionError } from '../src/index.js';
import { deferred, engineWithErrors, eventually, settle } from './helpers.js';
import { twoDevices } from './devices-support.js';
import { storeChoices } from './store-choices.js';

type Vars = { device?: string };

/** Real time for the Redis store's round trips (session time, on the ManualClock, stands still). */
const pause = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 150)); await settle(); };

/**
 * The phone's request, let go, awaits the laptop's close while the laptop's request still works: the
 * answer must wait for that request to end and for the laptop's hook, which sees its last write.
 */
async function phoneAnsweredAfterLaptop(w: {
  phoneGate: { resolve(): void }; laptopGate: { resolve(): void }; laptopWork: Promise<void>; phoneWork: Promise<void>;
  answer: () => boolean | undefined; hooks: string[]; errors: SessionError[];
}): Promise<void> {
  w.phoneGate.resolve();
  await pause();
  assert.equal(w.answer(), undefined, 'the laptop\'s request still works: its close has not happened');
  assert.deepEqual(w.hooks, []);
  w.laptopGate.resolve();
  await w.laptopWork;
  await w.phoneWork;
  assert.equal(w.answer(), true);
  assert.ok(await eventually(() => w.hooks.length === 2, 5_000));
  assert.deepEqual(w.hooks, ['laptop (saved)', 'phone']);
  assert.deepEqual(w.errors.map((e) => e.code), []);
}

for (const [name, choose] of storeChoices()) {
  const setup = async (options: object): Promise<ReturnType<typeof engineWithErrors<Vars>> & { clock: ManualClock; hooks: string[] }> => {
    const clock = new ManualClock();
    const hooks: string[] = [];
    const made = engineWithErrors<Vars>({
      ...options, clock, closeTimeoutMs: 10_000, init: () => ({}),
      onClose: (proc) => { hooks.push(String(proc.vars.device)); },
    });
    return { ...made, clock, hooks };
  };

  test(`${name}: a close started with .catch() and left to run is no wait: a request awaiting the close of that caller's session waits for its request and hook`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const { engine, errors, clock, hooks } = await setup(choice.options);
    const laptopGate = deferred();
    const phoneGate = deferred();
    try {
      const { laptop, phone } = await twoDevices(engine);
      // The phone's request runs; it will await the laptop's close.
      let answer: boolean | undefined;
      const phoneWork = phone.run(async () => {
        await phoneGate.promise;
        answer = await engine.closeSession(laptop.sessionId);
      }).then(() => phone.release());
      // The laptop's request logs the phone out without waiting for it, and goes on working.
      const laptopWork = laptop.run(async () => {
        engine.closeSession(phone.sessionId).catch(() => {});
        await laptopGate.promise;
        laptop.proc.vars.device = 'laptop (saved)';
      }).then(() => laptop.release());
      await pause();
      await phoneAnsweredAfterLaptop({ phoneGate, laptopGate, laptopWork, phoneWork, answer: () => answer, hooks, errors });
    } finally {
      laptopGate.resolve();
      phoneGate.resolve();
      clock.advance(60_000);
      await engine.stop();
    }
  });

  test(`${name}: two requests each awaiting closeSession(other).catch(...) of the other's session: the awaited .catch is a wait, the cycle is broken`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const { engine, errors, clock, hooks } = await setup(choice.options);
    try {
      const { laptop, phone } = await twoDevices(engine);
      const done: string[] = [];
      const fromLaptop = laptop.run(async () => engine.closeSession(phone.sessionId).catch(() => false)).then((closed) => { done.push('laptop'); laptop.release(); return closed; });
      const fromPhone = phone.run(async () => engine.closeSession(laptop.sessionId).catch(() => false)).then((closed) => { done.push('phone'); phone.release(); return closed; });
      assert.ok(await eventually(() => done.length === 2, 5_000), `both requests went on without session time passing (${done.join(', ')})`);
      assert.deepEqual([await fromLaptop, await fromPhone], [true, true]);
      assert.ok(await eventually(() => hooks.length === 2, 5_000), 'both hooks ran');
      assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'no drain timed out');
    } finally {
      clock.advance(60_000);
      await engine.stop();
    }
  });

  // A then() chained at the call is no await (src/close-waits.ts); counted as one, it closed a cycle with
  // the phone's hook, whose wait then ended early: told `true` while the laptop's request still worked.
  test(`${name}: a close started with a handler (.then(log, ignore)) holds nobody: the hook of the session it closes, logging out every device, is told the caller's session closed only once it did`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const clock = new ManualClock();
    const log: string[] = [];
    let laptopId = '';
    const { engine, errors } = engineWithErrors<Vars>({
      ...choice.options, clock, closeTimeoutMs: 10_000, init: () => ({}),
      onClose: async (proc) => {
        log.push(`hook ${String(proc.vars.device)}`);
        if (proc.vars.device === 'phone') log.push(`phone's hook: laptop closed ${String(await engine.closeSession(laptopId))}`);
      },
    });
    const gate = deferred();
    try {
      const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      phone.proc.vars.device = 'phone';
      phone.release();
      const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      laptop.proc.vars.device = 'laptop';
      laptopId = laptop.sessionId;
      const work = laptop.run(async () => {
        engine.closeSession(phone.sessionId).then((closed) => { log.push(`laptop heard ${String(closed)}`); }, () => {});
        await gate.promise;
        log.push('laptop request done');
      }).then(() => laptop.release());
      await pause();
      assert.deepEqual(log, ['hook phone'], 'the phone\'s hook awaits the laptop\'s close, which waits for the laptop\'s request');
      gate.resolve();
      await work;
      assert.ok(await eventually(() => log.length === 5, 5_000), log.join(' / '));
      assert.deepEqual(log, ['hook phone', 'laptop request done', 'hook laptop', 'phone\'s hook: laptop closed true', 'laptop heard true']);
      assert.deepEqual(errors.map((e: SessionError) => e.code), []);
    } finally {
      gate.resolve();
      clock.advance(60_000);
      await engine.stop();
    }
  });

  for (const [form, call] of Object.entries({
    'p.catch(log); await p': async (p: Promise<boolean>): Promise<boolean> => { p.catch(() => {}); return await p; },
    'await p.then(f)': async (p: Promise<boolean>): Promise<boolean> => await p.then((closed) => closed),
  })) {
    test(`${name}: two requests each closing the other's session with ${form}: an await after a handler is a wait, the cycle is broken`, { timeout: 20_000 }, async (t) => {
      const choice = await choose(t);
      if (choice === 'skip') return;
      const { engine, errors, clock, hooks } = await setup(choice.options);
      try {
        const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
        const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
        const done: string[] = [];
        const fromLaptop = laptop.run(() => call(engine.closeSession(phone.sessionId))).then((closed) => { done.push('laptop'); laptop.release(); return closed; });
        const fromPhone = phone.run(() => call(engine.closeSession(laptop.sessionId))).then((closed) => { done.push('phone'); phone.release(); return closed; });
        assert.ok(await eventually(() => done.length === 2, 5_000), `both requests went on without session time passing (${done.join(', ')})`);
        assert.deepEqual([await fromLaptop, await fromPhone], [true, true]);
        assert.ok(await eventually(() => hooks.length === 2, 5_000), 'both hooks ran');
        assert.deepEqual(errors.map((e: SessionError) => e.code), [], 'no drain timed out');
      } finally {
        clock.advance(60_000);
        await engine.stop();
      }
    });
  }

  test(`${name}: an await of a close given up by its request (Promise.race) is no wait once that request left, though its process runs the session's next request`, { timeout: 20_000 }, async (t) => {
    const choice = await choose(t);
    if (choice === 'skip') return;
    const { engine, errors, clock, hooks } = await setup(choice.options);
    const phoneGate = deferred();
    const laptopGate = deferred();
    try {
      const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      laptop.proc.vars.device = 'laptop';
      const laptopId = laptop.sessionId;
      const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
      phone.proc.vars.device = 'phone';
      let answer: boolean | undefined;
      const phoneWork = phone.run(async () => {
        await phoneGate.promise;
        answer = await engine.closeSession(laptopId);
      }).then(() => phone.release());
      // The laptop's first request awaits the phone's close, gives up, and ends.
      const givenUp = deferred<string>();
      const first = laptop.run(() => Promise.race([engine.closeSession(phone.sessionId).then(() => 'closed'), givenUp.promise]));
      await pause();
      givenUp.resolve('gave up');
      assert.equal(await first, 'gave up');
      laptop.release();
      const next = await engine.acquire({ sessionId: laptopId, ip: '127.0.0.1' });
      const laptopWork = next.run(async () => {
        await laptopGate.promise;
        next.proc.vars.device = 'laptop (saved)';
      }).then(() => next.release());
      await phoneAnsweredAfterLaptop({ phoneGate, laptopGate, laptopWork, phoneWork, answer: () => answer, hooks, errors });
    } finally {
      laptopGate.resolve();
      phoneGate.resolve();
      clock.advance(60_000);
      await engine.stop();
    }
  });
}
