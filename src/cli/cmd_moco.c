/* cmd_moco.c — `memfit eval moco`: how good a trained MoCo backbone's features are, by the kNN monitor
 * (k 200, T 0.1, cosine) and a linear probe (softmax regression by SGD on the frozen features) on a labelled
 * training set and a labelled test set. Parses, calls models/moco_eval.c and train/probe.c, prints. */
#include "cli.h"
#include "models/moco_eval.h"
#include <stdlib.h>
#include <string.h>

static int usage(void) {
  printf("usage: memfit eval moco --model MODEL --data TRAIN --val-data TEST [options]\n"
         "Features of the query backbone (eval mode) of a model written by memfit train moco (OUT/model.safetensors)\n"
         "for a labelled training set (the kNN bank, the probe's training set) and a labelled test set; prints the\n"
         "kNN top-1 accuracy and the linear probe's train / test accuracy.\n"
         "  --model FILE           model.safetensors of a memfit train moco run\n"
         "  --data DIR|FILE        labelled training images: an IDX images file (labels beside it, e.g. Fashion-MNIST's\n"
         "                         train-images-idx3-ubyte.gz) or a folder of class sub-folders\n"
         "  --val-data DIR|FILE    labelled test images, the same way (e.g. t10k-images-idx3-ubyte.gz)\n"
         "  --bank N --test N      use the first N of each (default 0: all)\n"
         "  --knn-k K --knn-t T    kNN neighbours and temperature (default 200, 0.1)\n"
         "  --probe-epochs N       linear probe epochs (default 100; 0: no probe)\n"
         "  --probe-lr X --probe-wd W --probe-batch B  its SGD (momentum 0.9, cosine): default 0.1, 0, 256\n"
         "  --threads T            CPU threads (default: all cores)\n"
         "  --json                 also print the results as one JSON object, the last line\n");
  return 0;
}

/* a labelled data set (IDX file or folder of class sub-folders); NULL after saying why */
static mf_dataset *open_labelled(const char *opt, const char *path) {
  mf_folder_opts fo = mf_folder_opts_default();
  fo.labels = 1;
  char err[1024];
  mf_dataset *d = mf_dataset_open_path(path, &fo, err, sizeof err);
  if (!d) fprintf(stderr, "memfit eval moco: %s %s: %s\n", opt, path, err);
  else if (mf_dataset_num_classes(d) < 2) {
    fprintf(stderr, "memfit eval moco: %s %s: %d classes; the evaluation needs labelled images of 2 classes or more\n", opt,
            path, mf_dataset_num_classes(d));
    mf_dataset_free(d);
    d = NULL;
  }
  return d;
}

int mf_cmd_eval_moco(int argc, char **argv) {
  const char *model = NULL, *data = NULL, *val = NULL, *v;
  int bank = 0, test = 0, k = 200, epochs = 100, pbatch = 256, threads = 0, json = 0;
  double t = 0.1, plr = 0.1, pwd = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage();
    if ((v = cli_opt(argc, argv, &i, "--model"))) model = v;
    else if ((v = cli_opt(argc, argv, &i, "--data"))) data = v;
    else if ((v = cli_opt(argc, argv, &i, "--val-data"))) val = v;
    else if ((v = cli_opt(argc, argv, &i, "--bank"))) { if (cli_int("--bank", v, 0, 1 << 30, &bank)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--test"))) { if (cli_int("--test", v, 0, 1 << 30, &test)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--knn-k"))) { if (cli_int("--knn-k", v, 1, 100000, &k)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--knn-t"))) { if (cli_double("--knn-t", v, 1e-6, 1e6, &t)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--probe-epochs"))) { if (cli_int("--probe-epochs", v, 0, 100000, &epochs)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--probe-lr"))) { if (cli_double("--probe-lr", v, 1e-9, 1e3, &plr)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--probe-wd"))) { if (cli_double("--probe-wd", v, 0, 10, &pwd)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--probe-batch"))) { if (cli_int("--probe-batch", v, 1, 1 << 20, &pbatch)) return 2; }
    else if ((v = cli_opt(argc, argv, &i, "--threads"))) { if (cli_int("--threads", v, 0, 4096, &threads)) return 2; }
    else if (!strcmp(argv[i], "--json")) json = 1;
    else return cli_unknown_option("eval moco", argv[i]);
  }
  if (!model || !data || !val) {
    fprintf(stderr, "memfit eval moco: give --model, --data (labelled training images) and --val-data (labelled test images); "
                    "see --help\n");
    return 2;
  }
  char err[1024];
  int rc = 1;
  mf_dataset *dtr = NULL, *dte = NULL;
  float *ftr = NULL, *fte = NULL;
  int32_t *ltr = NULL, *lte = NULL, *pred = NULL;
  moco_extractor *x = moco_extractor_open(model, threads, err, sizeof err);
  if (!x) { fprintf(stderr, "memfit eval moco: --model %s\n", err); return 1; }
  if (!(dtr = open_labelled("--data", data)) || !(dte = open_labelled("--val-data", val))) goto out;
  if (mf_dataset_num_classes(dtr) != mf_dataset_num_classes(dte)) {
    fprintf(stderr, "memfit eval moco: --data has %d classes, --val-data %d; they must be the same classes\n",
            mf_dataset_num_classes(dtr), mf_dataset_num_classes(dte));
    goto out;
  }
  size_t ntr = mf_dataset_size(dtr), nte = mf_dataset_size(dte);
  if (bank && (size_t)bank < ntr) ntr = (size_t)bank;
  if (test && (size_t)test < nte) nte = (size_t)test;
  size_t D = (size_t)moco_extractor_dim(x), gtr = 0, gte = 0;
  ftr = malloc(ntr * D * sizeof *ftr); fte = malloc(nte * D * sizeof *fte);
  ltr = malloc(ntr * sizeof *ltr); lte = malloc(nte * sizeof *lte); pred = malloc(nte * sizeof *pred);
  if (!ftr || !fte || !ltr || !lte || !pred) { fprintf(stderr, "memfit eval moco: out of host memory for the features\n"); goto out; }
  const moco_cfg *c = moco_extractor_cfg(x);
  printf("model %s: MoCo v%d, ResNet-%d x%g, %dx%d, %d channel%s; features D = %zu\n", model, c->version, c->depth, c->width,
         c->size, c->size, c->channels, c->channels == 1 ? "" : "s", D);
  int64_t skipped = 0;
  if (moco_extract(x, dtr, ntr, ftr, ltr, &gtr, &skipped, err, sizeof err) < 0 ||
      moco_extract(x, dte, nte, fte, lte, &gte, &skipped, err, sizeof err) < 0) {
    fprintf(stderr, "memfit eval moco: %s\n", err);
    goto out;
  }
  if (skipped) printf("%lld images could not be read and were left out\n", (long long)skipped);
  knn_opts ko = knn_opts_default();
  ko.k = k;
  ko.temperature = t;
  ko.n_classes = mf_dataset_num_classes(dtr);
  ko.threads = threads;
  double knn;
  if (knn_classify(ftr, ltr, (int64_t)gtr, fte, lte, (int64_t)gte, (int)D, &ko, pred, &knn, err, sizeof err) < 0) {
    fprintf(stderr, "memfit eval moco: kNN: %s\n", err);
    goto out;
  }
  printf("kNN top-1 %.2f%% (k %d, T %g, cosine; %zu bank images, %zu test images)\n", 100 * knn, k, t, gtr, gte);
  linprobe_result pr = {0};
  if (epochs > 0) {
    linprobe_opts po = linprobe_opts_default();
    po.n_classes = ko.n_classes;
    po.epochs = epochs;
    po.lr = plr;
    po.weight_decay = pwd;
    po.batch = pbatch;
    if (linprobe_train(ftr, ltr, (int64_t)gtr, fte, lte, (int64_t)gte, (int)D, &po, &pr, NULL, err, sizeof err) < 0) {
      fprintf(stderr, "memfit eval moco: linear probe: %s\n", err);
      goto out;
    }
    printf("linear probe: test %.2f%%, train %.2f%% (%d epochs, SGD lr %g momentum 0.9 cosine, weight decay %g, batch %d)\n",
           100 * pr.test_acc, 100 * pr.train_acc, epochs, plr, pwd, pbatch);
  }
  if (json) {
    fputs("{\"model\": ", stdout);
    mf_json_str(stdout, model);
    printf(", \"knn_top1\": %.6f, \"knn_k\": %d, \"knn_t\": %g, \"bank\": %zu, \"test\": %zu, \"probe_epochs\": %d, "
           "\"probe_test\": %.6f, \"probe_train\": %.6f, \"skipped\": %lld}\n",
           knn, k, t, gtr, gte, epochs, pr.test_acc, pr.train_acc, (long long)skipped);
  }
  rc = 0;
out:
  free(ftr); free(fte); free(ltr); free(lte); free(pred);
  mf_dataset_free(dtr);
  mf_dataset_free(dte);
  moco_extractor_free(x);
  return rc;
}
