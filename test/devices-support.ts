import { ManualClock, type SessionEngineOptions, type SessionError, type SessionEngine, type RequestLease, type WebProcess } from '../src/index.js';
import { engineWithErrors } from './helpers.js';

export type DeviceVars = { device?: string };

export interface PhoneAndLaptop {
  readonly engine: SessionEngine<DeviceVars>;
  readonly errors: SessionError[];
  readonly clock: ManualClock;
  /** What each hook saw, as `label` wrote it, in the order they ran. */
  readonly hooks: string[];
  /** The phone's session id (idle). */
  readonly phone: string;
  /** The laptop's request, running (its lease held). */
  readonly laptop: RequestLease<DeviceVars>;
}

/**
 * One user on two devices, whose `onClose` logs out every other device ("log out everywhere": it awaits
 * the close of each): an idle phone and a laptop whose request runs. `closeTimeoutMs` is 10 s on a
 * clock that stands still, so nothing here waits for it.
 */
export async function phoneAndLaptop(storeOptions: SessionEngineOptions<DeviceVars>, label: (proc: WebProcess<DeviceVars>) => string = (proc) => String(proc.vars.device)): Promise<PhoneAndLaptop> {
  const clock = new ManualClock();
  const devices = new Set<string>();
  const hooks: string[] = [];
  const { engine, errors } = engineWithErrors<DeviceVars>({
    ...storeOptions, clock, closeTimeoutMs: 10_000, init: () => ({}),
    onClose: async (proc) => {
      hooks.push(label(proc));
      const own = engine.currentSessionId();
      for (const other of [...devices]) if (other !== own) await engine.closeSession(other);
      devices.delete(own);
    },
  });
  const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
  phone.proc.vars.device = 'phone';
  devices.add(phone.sessionId);
  phone.release();
  const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
  laptop.proc.vars.device = 'laptop';
  devices.add(laptop.sessionId);
  return { engine, errors, clock, hooks, phone: phone.sessionId, laptop };
}

/** A laptop's and a phone's request, each running in a new session whose `device` var names it. */
export async function twoDevices<V extends DeviceVars>(engine: SessionEngine<V>): Promise<{ laptop: RequestLease<V>; phone: RequestLease<V> }> {
  const laptop = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
  laptop.proc.vars.device = 'laptop';
  const phone = await engine.acquire({ sessionId: undefined, ip: '127.0.0.1' });
  phone.proc.vars.device = 'phone';
  return { laptop, phone };
}
