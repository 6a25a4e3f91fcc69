"""Train the paper's classifier from video-level labels, evaluating the test AUC after every iteration.

    python train.py --da 64 --r 3
    python train.py --dataset xd --da 64 --r 3

Step for step the authors' run: with the same seed, data and device it gives their sequence of AUCs.
The best model so far is kept in ckpt/SelfAttention-da{da}-r{r}-T{T}-seed{seed}.pth, its history in
the .csv beside it (plotted in the .png), and the state to --resume from in the .state.pt beside it.
On another benchmark the names carry its tag (SelfAttention-shanghai-..., SelfAttention-xd-...), and
"the test AUC" is its headline metric: the frame-level AP on XD-Violence, as RTFM selects there.

That is the paper's selection: the best of thousands of evaluations on the test set itself. The
selections that never look at test labels, --select last and --select val, name their files
...-last and ...-val{fraction}; the test AUC is still evaluated and recorded, but it chooses nothing.
"""
import argparse
import csv
import os

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from cli import (HelpFormatter, add_common_arguments, add_select_arguments, check_positive, fill_defaults, pick_device,
                 run, run_name, use_benchmark)
from dataset import (DataError, Pool, TestSet, is_normal, load_train_pools, read_list, video_class, write_atomic,
                     write_csv)
from metrics import frame_ap, frame_auc, video_auc
from model import VideoClassifier, eval_mode, save_checkpoint
from protocol import snippet_scores

HISTORY_HEADER = ['iteration', 'epoch', 'loss']  # then the headline metric's column: auc (ap on XD-Violence)


class PairedSampler:
    """The original's batches: the next B normal samples, then the next B anomalous ones.

    Each pool is walked in an order that np.random.shuffle reshuffles in place at every epoch
    (normal first), after one shuffle at the start; an epoch lasts while position + B < size
    holds for both pools (249 iterations on UCF-Crime).
    """

    def __init__(self, n_normal, n_anomalous, batch_size):
        self.orders = [np.arange(n_normal), np.arange(n_anomalous)]
        for order in self.orders:
            np.random.shuffle(order)
        self.batch_size = batch_size
        self.epoch, self.position = 0, None  # None: no epoch begun yet

    def epoch_over(self):
        return self.position is None or any(self.position + self.batch_size >= len(o) for o in self.orders)

    def new_epoch(self):
        for order in self.orders:
            np.random.shuffle(order)
        self.epoch, self.position = self.epoch + 1, 0

    def take(self):
        """Indices of the next batch into the normal and into the anomalous pool."""
        start, self.position = self.position, self.position + self.batch_size
        return [order[start:self.position] for order in self.orders]

    def state_dict(self):
        return {'orders': self.orders, 'epoch': self.epoch, 'position': self.position}

    def load_state_dict(self, state):
        self.orders, self.epoch, self.position = state['orders'], state['epoch'], state['position']


def train_step(model, optimizer, schedule, sampler, normal, anomalous):
    """One iteration before its evaluation: the sampler's next batch of normal samples followed by as many
    anomalous ones, labelled 0 and 1, BCE on their scores, one RAdam step. Returns the loss."""
    normal_index, anomalous_index = sampler.take()
    device = next(model.parameters()).device
    batch = torch.from_numpy(np.concatenate([normal[normal_index], anomalous[anomalous_index]])).to(device)
    labels = torch.cat([torch.zeros(len(normal_index)), torch.ones(len(anomalous_index))]).to(device)
    loss = nn.BCELoss()(model(batch), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss


def official_radam(parameters, lr):
    """The RAdam of Liu et al. that the authors used (degenerated_to_sgd=False), via torch's RAdam.

    While the variance rectifier is undefined (steps 1-5) the official RAdam leaves the weights
    alone, where torch's would take an unrectified step; a learning rate of 0 on those steps
    makes the two the same. From step 6 both take the rectified step.
    """
    optimizer = torch.optim.RAdam(parameters, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps_taken: float(steps_taken >= 5))
    return optimizer, schedule


def rng_state(device):
    state = {'torch': torch.get_rng_state(), 'numpy': np.random.get_state()}
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    if device.type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'], device)


def hold_out(paths, fraction, seed, stratum=video_class):
    """--select val's held-out train videos, in list order: a class-stratified share of them.

    Within each class the videos are shuffled by a generator of their own (the global RNGs, and so
    the run's draws, stay untouched); then of the classes laid end to end every 1/fraction-th video
    is taken, so that each class gives its share to within one video.
    """
    rng = np.random.default_rng(seed)
    ordered = [p for c in sorted({stratum(p) for p in paths})
               for p in rng.permutation([p for p in paths if stratum(p) == c]).tolist()]
    taken = np.diff(np.floor(fraction * np.arange(len(ordered) + 1))) > 0
    chosen = {p for p, t in zip(ordered, taken) if t}
    return [p for p in paths if p in chosen]


@torch.no_grad()
def validation_auc(model, features, crops, paths, is_normal=is_normal):
    """Video-level AUC on held-out videos: a video's score is the mean over its crops of the eval-mode score."""
    with eval_mode(model):
        scores = [s.mean().item() for s in model(features).split(crops)]
    return video_auc(scores, paths, is_normal)


def main(args):
    check_positive(args, 'batch_size', 'T', 'test_split_size', 'da', 'r', 'feature_size', 'max_epoch',
                   'eval_every', 'save_every')
    if args.log_every is not None:
        check_positive(args, 'log_every')
    if args.select == 'val' and not 0 < args.val_fraction < 1:
        raise DataError(f'--val-fraction must lie between 0 and 1, got {args.val_fraction}')
    device = pick_device(args.device)
    name = run_name(args)
    ckpt_path, history_path, state_path, plot_path = (os.path.join(args.ckpt_dir, name + ext)
                                                      for ext in ('.pth', '.csv', '.state.pt', '.png'))
    benchmark, metric = args.benchmark, args.benchmark.metric
    label = metric.upper()
    header = HISTORY_HEADER + [metric] + ['val_auc'] * (args.select == 'val')
    headline = {'auc': frame_auc, 'ap': frame_ap}[metric]

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = VideoClassifier(args.feature_size, args.da, args.r).to(device)
    print(f'{name}: {sum(p.numel() for p in model.parameters()):,} parameters, on {device}')
    optimizer, schedule = official_radam(model.parameters(), args.lr)
    test_set = TestSet(args.test_rgb_list, args.gt, args.feature_size, device)
    held_out = []
    if args.select == 'val':
        held_out = hold_out(read_list(args.pre_rgb_list), args.val_fraction, args.seed, benchmark.stratum)
        n_normal = sum(map(benchmark.is_normal, held_out))
        print(f'--select val: {n_normal} normal and {len(held_out) - n_normal} anomalous train videos held out')
        if n_normal in (0, len(held_out)):
            raise DataError(f'--val-fraction {args.val_fraction} holds out no normal or no anomalous video; '
                            'the validation AUC needs both')
        val = Pool(held_out, args.feature_size, 'held-out')
        val_features, val_crops = torch.from_numpy(val[np.arange(len(val))]).to(device), np.diff(val.starts).tolist()

    def validate():
        return validation_auc(model, val_features, val_crops, held_out, benchmark.is_normal) if held_out else ''

    def evaluate():
        # The authors evaluated by iterating a torch DataLoader, and every such iteration draws one
        # base seed from torch's global generator. Drawing it here too keeps the dropout masks, and
        # so the whole run, identical to theirs.
        torch.empty((), dtype=torch.int64).random_()
        return headline(snippet_scores(model, test_set, args.test_split_size), test_set.gt)

    if args.resume:
        if not os.path.isfile(state_path):
            raise DataError(f'{state_path}: no saved state to resume from (train without --resume first)')
        state = torch.load(state_path, map_location='cpu', weights_only=False)
        if state['args'] != run_identity(args):
            raise DataError(f'{state_path}: was saved by a run with {state["args"]}, not {run_identity(args)}')
        normal, anomalous = load_train_pools(args.pre_rgb_list, args.feature_size, args.T, held_out,
                                             benchmark.is_normal)
        sampler = PairedSampler(len(normal), len(anomalous), args.batch_size)
        sampler.load_state_dict(state['sampler'])
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        schedule.load_state_dict(state['schedule'])
        history, best_auc = state['history'], state['best_auc']
        best_val = state.get('best_val', '')  # states saved before --select existed are --select best's
        set_rng_state(state['rng'], device)
        print(f'resuming {name} after iteration {len(history) - 1}')
    else:
        first_auc = evaluate()
        history, best_auc = [[0, '', '', float(first_auc)]], first_auc
        print(f'{name}: {label} before training {first_auc:.6f}')
        best_val = validate()
        if held_out:  # the untrained model is kept until a trained one validates better
            history[0].append(best_val)
            save_checkpoint(model, ckpt_path)
        normal, anomalous = load_train_pools(args.pre_rgb_list, args.feature_size, args.T, held_out,
                                             benchmark.is_normal)
        if min(len(normal), len(anomalous)) <= args.batch_size:
            raise DataError(f'{args.pre_rgb_list}: {len(normal)} normal and {len(anomalous)} anomalous samples '
                            f'(videos x crops); each pool needs more than --batch-size {args.batch_size}')
        sampler = PairedSampler(len(normal), len(anomalous), args.batch_size)
    write_csv(history_path, header, history)

    def save_state():
        state = {'args': run_identity(args), 'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                 'schedule': schedule.state_dict(), 'sampler': sampler.state_dict(), 'history': history,
                 'best_auc': best_auc, 'best_val': best_val, 'rng': rng_state(device)}
        write_atomic(state_path, lambda f: torch.save(state, f))

    iteration = len(history) - 1
    per_epoch = (min(len(normal), len(anomalous)) - 1) // args.batch_size
    total = min(per_epoch * args.max_epoch, args.max_iters or per_epoch * args.max_epoch)
    log_every = args.log_every or max(1, per_epoch // 4)
    progress = tqdm(total=total, initial=iteration, desc=name, dynamic_ncols=True)
    model.train()
    with open(history_path, 'a', buffering=1) as history_file:  # one line a write: never torn
        writer = csv.writer(history_file, lineterminator='\n')
        while iteration < total:
            if sampler.epoch_over():
                if sampler.epoch == args.max_epoch:
                    break
                sampler.new_epoch()
            loss = train_step(model, optimizer, schedule, sampler, normal, anomalous)
            iteration += 1

            auc = float(evaluate()) if iteration % args.eval_every == 0 else ''
            val = validate() if auc != '' else ''
            if auc != '' and auc > best_auc:  # strictly better than the best so far, the first AUC included
                best_auc = auc
                if args.select == 'best':
                    save_checkpoint(model, ckpt_path)
            if val != '' and val > best_val:
                best_val = val
                save_checkpoint(model, ckpt_path)
            history.append([iteration, sampler.epoch, loss.item(), auc] + [val] * bool(held_out))
            writer.writerow(history[-1])
            if iteration % args.save_every == 0:
                save_state()
            progress.update()
            if iteration % log_every == 0:
                progress.write(f'{name} epoch {sampler.epoch} iteration {iteration} loss {loss.item():.4f} '
                               f'{metric} {auc if auc == "" else f"{auc:.6f}"} max_{metric} {best_auc:.6f}'
                               + (f' val_auc {val:.6f}' if val != '' else ''))
    progress.close()
    save_state()
    if args.select == 'last':
        save_checkpoint(model, ckpt_path)
    from plots import plot_history  # matplotlib only when drawing, as in test.py: 0.4 s of start-up
    plot_history(header, history, plot_path, name)
    report(args, history, test_set, model, ckpt_path, len(held_out), headline, label)
    print(f'history in {history_path}, plotted in {plot_path}')


def report(args, history, test_set, model, ckpt_path, n_held_out, headline=frame_auc, label='AUC'):
    """The end-of-run summary: the paper's best test AUC (or the benchmark's headline metric, label), the last
    one, and what --select kept."""
    evaluated = [row for row in history if row[3] != '']
    best = max(evaluated, key=lambda row: row[3])  # the first of equals, as the strict improvement kept
    last_auc = history[-1][3]
    if last_auc == '':  # not evaluated at the last iteration: score the final model (no RNG draw)
        last_auc = float(headline(snippet_scores(model, test_set, args.test_split_size), test_set.gt))
    print(f'best test {label} {best[3]:.6f} at iteration {best[0]}: the paper\'s selection, the best of '
          f'{len(evaluated)} evaluations on the test set itself')
    print(f'test {label} at the last iteration ({history[-1][0]}): {last_auc:.6f}')
    if args.select == 'best' and not os.path.isfile(ckpt_path):
        print(f'no iteration beat the {label} before training ({history[0][3]:.6f}): no checkpoint written')
    elif args.select == 'best':
        print(f'kept the best test {label} (iteration {best[0]}) in {ckpt_path}')
    elif args.select == 'last':
        print(f'kept the last model (iteration {history[-1][0]}, test {label} {last_auc:.6f}) in {ckpt_path}')
    else:
        kept = max((row for row in evaluated if row[4] != ''), key=lambda row: row[4])
        print(f'kept the best validation AUC {kept[4]:.6f} on {n_held_out} held-out train videos (iteration '
              f'{kept[0]}, test {label} {kept[3]:.6f}) in {ckpt_path}')


def run_identity(args):
    """What a resumed run must share with the saved one."""
    keys = ['da', 'r', 'T', 'seed', 'batch_size', 'feature_size', 'lr', 'test_split_size', 'eval_every',
            'pre_rgb_list', 'test_rgb_list', 'gt']
    return {k: getattr(args, k) for k in keys}


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--seed', type=int, default=1111,
                        help="seeds torch's and numpy's generators (the run's draws), and names the run")
    parser.add_argument('--batch-size', type=int, default=32, help='normal samples per batch, and as many anomalous; '
                                                                   'a sample is one crop of a pooled train video')
    parser.add_argument('--max-epoch', type=int, default=10, help='epochs, each a pass over the smaller pool')
    parser.add_argument('--max-iters', type=int, help='stop after this many iterations (default: all epochs)')
    parser.add_argument('--lr', type=float, default=1e-3, help="RAdam's learning rate")
    parser.add_argument('--pre-rgb-list', help='the pooled train videos, one file a line '
                                               '(default: list/pre-{dataset}-i3d-train-32.list, as the original, '
                                               'whatever --T)')
    parser.add_argument('--eval-every', type=int, default=1,
                        help="evaluate the test AUC every N iterations; 1: the paper's, after each")
    parser.add_argument('--save-every', type=int, default=50, help='save the state to --resume from every N iterations')
    parser.add_argument('--log-every', type=int, metavar='N', help='print a line every N iterations; the history '
                                                                   '.csv has every one (default: a quarter of an '
                                                                   "epoch's iterations, at least 1)")
    parser.add_argument('--resume', action='store_true', help='continue the interrupted run with these settings')
    add_select_arguments(parser)
    args = parser.parse_args()
    fill_defaults(args, pre_rgb_list=use_benchmark(args).train_list(32))
    run(main, args, 'train.py')
