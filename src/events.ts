// The node's event bus: what happened to devices, bricks and replicas, for whoever watches
// (the control API's WatchEvents stream, later metrics). Imports nothing: any layer may
// emit into it without knowing who listens. Bounded: a listener that throws is dropped.
import { EventEmitter } from 'node:events';

export type NodeEventKind =
  | 'device-found'
  | 'brick-mounted'
  | 'brick-degraded'
  | 'brick-missing'
  | 'brick-released'
  | 'replica-created'
  | 'replica-deleted'
  | 'replica-behind'
  | 'replica-caught-up'
  | 'replica-fenced'
  | 'checksum-error'
  | 'checksum-repaired'
  | 'scrub-done';

export interface NodeEvent {
  time: string;
  kind: NodeEventKind;
  device?: string;
  brickId?: string;
  volumeId?: string;
  message: string;
}

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Each watching client adds one listener; the control server bounds the watchers.
    this.emitter.setMaxListeners(1000);
  }

  emit(event: Omit<NodeEvent, 'time'>): void {
    this.emitter.emit('event', { time: new Date().toISOString(), ...event });
  }

  /** Call `listener` for every event from now on; returns the function that stops it. */
  subscribe(listener: (event: NodeEvent) => void): () => void {
    const safe = (event: NodeEvent) => {
      try {
        listener(event);
      } catch {
        this.emitter.off('event', safe);
      }
    };
    this.emitter.on('event', safe);
    return () => this.emitter.off('event', safe);
  }
}
